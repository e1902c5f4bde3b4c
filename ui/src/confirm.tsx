import { useRef, useState } from 'preact/hooks'

/** A modal question before anything is deleted: Escape or Cancel says no, and Cancel has the focus. */
export function useConfirm(): [preact.JSX.Element, (question: string, action: string) => Promise<boolean>] {
  const dialog = useRef<HTMLDialogElement>(null)
  const [text, setText] = useState({ question: '', action: 'Delete' })
  const answer = useRef<(yes: boolean) => void>(() => undefined)
  const close = (yes: boolean) => {
    dialog.current?.close()
    answer.current(yes)
  }
  const element = (
    <dialog ref={dialog} class="confirm" aria-labelledby="confirm-question" onClose={() => answer.current(false)}>
      <p id="confirm-question">{text.question}</p>
      <div class="actions">
        <button type="button" autofocus onClick={() => close(false)}>Cancel</button>
        <button type="button" class="danger" onClick={() => close(true)}>{text.action}</button>
      </div>
    </dialog>
  )
  const ask = (question: string, action: string) =>
    new Promise<boolean>((resolve) => {
      let settled = false
      answer.current = (yes) => {
        if (settled) return
        settled = true
        resolve(yes)
      }
      setText({ question, action })
      dialog.current?.showModal()
    })
  return [element, ask]
}
