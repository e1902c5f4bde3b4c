const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })

export const when = (iso: string | null | undefined): string => (iso ? dateTime.format(new Date(iso)) : '—')
export const number = (n: number | null | undefined): string => (n === null || n === undefined ? '—' : n.toLocaleString())
export const score = (n: unknown): string => (typeof n === 'number' ? n.toFixed(3) : '—')
export const excerpt = (text: string, max = 240): string => (text.length > max ? `${text.slice(0, max - 1).trimEnd()}…` : text)
