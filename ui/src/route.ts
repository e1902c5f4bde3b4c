/** Where the page is, in the URL's fragment: #/view?name=value. Bookmarkable, and never a key. */
export interface Route {
  view: string
  params: URLSearchParams
}

export function currentRoute(): Route {
  const hash = location.hash.replace(/^#\/?/, '')
  const [view = '', search = ''] = hash.split('?', 2)
  return { view: view || 'overview', params: new URLSearchParams(search) }
}

export function href(view: string, params: Record<string, string | undefined | null> = {}): string {
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value)
  const text = search.toString()
  return `#/${view}${text ? `?${text}` : ''}`
}

export function go(view: string, params: Record<string, string | undefined | null> = {}): void {
  location.hash = href(view, params)
}
