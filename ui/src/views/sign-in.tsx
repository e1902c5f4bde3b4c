import { useState } from 'preact/hooks'
import { api, ApiError, storeKey, type Access } from '../api'

/** Asks for a key when Sage requires one; it is checked, then kept for this tab only (sessionStorage). */
export function SignIn({ onSignedIn }: { onSignedIn: (access: Access) => void }) {
  const [key, setKey] = useState('')
  const [problem, setProblem] = useState('')
  const [busy, setBusy] = useState(false)
  const submit = async (event: Event) => {
    event.preventDefault()
    setBusy(true)
    try {
      const access = await api<Access>('/v1/access', { key: key.trim() })
      storeKey(key.trim())
      onSignedIn(access)
    } catch (error) {
      setProblem(error instanceof ApiError && error.status === 401 ? 'Sage does not accept this key.' : (error as Error).message)
    } finally {
      setBusy(false)
    }
  }
  return (
    <main class="sign-in">
      <h1>Sage</h1>
      <p>This Sage requires an API key. It is kept in this browser tab only and sent with each request.</p>
      <form onSubmit={submit}>
        <label for="key">API key</label>
        <input id="key" name="key" type="password" autocomplete="off" required value={key} onInput={(e) => setKey((e.target as HTMLInputElement).value)} autofocus />
        <button type="submit" disabled={busy || key.trim() === ''}>Sign in</button>
        <p class="problem" role="alert">{problem}</p>
      </form>
    </main>
  )
}
