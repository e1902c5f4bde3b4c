import { useEffect, useState } from 'preact/hooks'
import { api, ApiError, forgetKey, type Access, type NamespaceSummary } from './api'
import { useConfirm } from './confirm'
import { useLoad } from './load'
import { currentRoute, go, href, type Route } from './route'
import { Injections } from './views/injections'
import { MemoryRecord } from './views/memory'
import { Overview } from './views/overview'
import { Search } from './views/search'
import { Session } from './views/session'
import { Sessions } from './views/sessions'
import { SignIn } from './views/sign-in'

const TABS = [
  ['overview', 'Overview'],
  ['search', 'Search'],
  ['sessions', 'Sessions'],
  ['injections', 'Injections']
] as const

function useRoute(): Route {
  const [route, setRoute] = useState(currentRoute)
  useEffect(() => {
    const onChange = () => setRoute(currentRoute())
    addEventListener('hashchange', onChange)
    return () => removeEventListener('hashchange', onChange)
  }, [])
  return route
}

export function App() {
  const [access, setAccess] = useState<Access | null | undefined>(undefined)
  const [problem, setProblem] = useState('')
  useEffect(() => {
    api<Access>('/v1/access').then(setAccess, (error: Error) => {
      if (error instanceof ApiError && error.status === 401) {
        forgetKey()
        setAccess(null)
      } else setProblem(error.message)
    })
  }, [])
  if (problem) return <main class="sign-in"><h1>Sage</h1><p class="problem" role="alert">{problem}</p></main>
  if (access === undefined) return <main class="sign-in" aria-busy="true"><h1>Sage</h1><p>Connecting…</p></main>
  if (access === null) return <SignIn onSignedIn={setAccess} />
  return <Signed access={access} onSignOut={() => { forgetKey(); setAccess(null) }} />
}

function Signed({ access, onSignOut }: { access: Access; onSignOut: () => void }) {
  const route = useRoute()
  const [dialog, confirm] = useConfirm()
  const namespaces = useLoad(() => api<{ items: NamespaceSummary[] }>('/v1/namespaces'), [route.view])
  const list = namespaces.data?.items ?? []
  const namespace = route.params.get('ns') ?? list.find((n) => n.count > 0)?.namespace ?? list[0]?.namespace ?? 'default'
  const view = (() => {
    switch (route.view) {
      case 'search': return <Search namespace={namespace} params={route.params} />
      case 'sessions': return <Sessions namespace={namespace} />
      case 'session': return <Session namespace={namespace} sessionId={route.params.get('id') ?? ''} access={access} confirm={confirm} />
      case 'memory': return <MemoryRecord id={route.params.get('id') ?? ''} access={access} confirm={confirm} />
      case 'injections': return <Injections namespace={namespace} sessionId={route.params.get('session')} />
      default: return <Overview namespaces={list} />
    }
  })()
  const active = route.view === 'session' ? 'sessions' : route.view === 'memory' ? '' : route.view
  return (
    <>
      <header class="top">
        <h1><a href={href('overview')}>Sage</a></h1>
        <nav aria-label="Views">
          {TABS.map(([name, label]) => (
            <a key={name} href={href(name, { ns: route.params.get('ns') })} aria-current={active === name ? 'page' : undefined}>{label}</a>
          ))}
        </nav>
        <div class="namespace">
          <label for="ns">Namespace</label>
          <select id="ns" value={namespace} onChange={(e) => go(route.view === 'session' || route.view === 'memory' ? 'sessions' : route.view, { ns: (e.target as HTMLSelectElement).value, q: route.params.get('q') })}>
            {list.length === 0 && <option value={namespace}>{namespace}</option>}
            {list.map((n) => <option key={n.namespace} value={n.namespace}>{n.namespace} ({n.count.toLocaleString()})</option>)}
          </select>
        </div>
        <div class="who">
          {access.keys_required ? <>key <strong>{access.key}</strong>{!access.can_delete && ' (read only)'} <button type="button" class="small" onClick={onSignOut}>Sign out</button></> : 'open (no keys configured)'}
        </div>
      </header>
      <main>{view}</main>
      {dialog}
    </>
  )
}

