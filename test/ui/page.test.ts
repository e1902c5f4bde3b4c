import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { REPO_ROOT } from '../helper.js'
import { startSage, type SageProcess } from '../support/sage-process.js'

/** Debian's chromium; `npx playwright install` cannot download a browser here. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
/** Screenshots of each view, kept as test artefacts (gitignored); the README's come from here. */
export const ARTEFACTS = join(REPO_ROOT, 'test-artifacts', 'ui')

const FIXTURES = join(REPO_ROOT, 'test/fixtures/claude-code')
const fixture = (name: string) => JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as Record<string, unknown>
const SECRETS = { admin: 'admin-secret-0123456789abcdef00', reader: 'reader-secret-0123456789abcdef' }
const EARLIER_SESSION = fixture('stop.json').session_id as string
const LATER_SESSION = fixture('session-start.json').session_id as string
const inCi = process.env.CI === 'true'

describe('the page at /ui in a real browser', { skip: !inCi && !existsSync(CHROMIUM) && `no browser at ${CHROMIUM}` }, () => {
  let sage: SageProcess
  let browser: Browser
  let dataDir: string
  const problems: string[] = []

  const hook = async (body: Record<string, unknown>) => {
    const res = await fetch(`${sage.url}/hooks/claude-code`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${SECRETS.admin}` },
      body: JSON.stringify(body)
    })
    assert.equal(res.status, 200)
    return (await res.json()) as Record<string, unknown>
  }

  async function signedIn(secret: string, viewport = { width: 1280, height: 900 }): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport })
    const page = await context.newPage()
    page.on('console', (message) => {
      // A 401 or 404 answer is logged by the browser as a failed load: expected (a wrong key); anything else is not.
      if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) problems.push(message.text())
    })
    page.on('pageerror', (error) => problems.push(error.message))
    await page.goto(`${sage.url}/ui`)
    await page.getByLabel('API key').fill(secret)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('heading', { name: 'Overview' }).waitFor()
    return { context, page }
  }
  const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTEFACTS, `${name}.png`), fullPage: true })

  before(async () => {
    await mkdir(ARTEFACTS, { recursive: true })
    dataDir = await mkdtemp(join(tmpdir(), 'sage-ui-'))
    sage = await startSage({
      SAGE_DATA_DIR: dataDir,
      SAGE_API_KEYS: `admin:${SECRETS.admin}=*:delete;reader:${SECRETS.reader}=*`,
      // The machine is shared: the test is about what the page shows, not about the hook's speed.
      HOOK_DEADLINE_MS: '5000'
    })
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] })
    // A session driven by the hook fixtures: an earlier session's answer and summary, then a later prompt about it.
    await hook(fixture('stop.json'))
    await hook(fixture('post-compact.json'))
    await hook({ ...fixture('user-prompt-submit.json'), prompt_id: 'earlier-prompt' })
    const answer = await hook({ ...fixture('user-prompt-submit.json'), session_id: LATER_SESSION, prompt_id: 'later-prompt' })
    assert.ok('hookSpecificOutput' in answer, `the later prompt is injected with the earlier session: ${JSON.stringify(answer)}`)
  })
  after(async () => {
    await browser?.close()
    await sage?.stop()
    await rm(dataDir, { recursive: true, force: true })
  })

  test('sign in with a key, see the overview, search, open the session and the injection, delete a memory', async () => {
    const { context, page } = await signedIn(SECRETS.admin)
    await page.getByText('key admin').waitFor()
    // The key is kept for this tab only, and never in the address.
    assert.equal(await page.evaluate("sessionStorage.getItem('sage-api-key')"), SECRETS.admin)
    assert.equal(await page.evaluate('localStorage.length'), 0)
    assert.ok(!page.url().includes(SECRETS.admin))
    await page.getByRole('row', { name: /billing/ }).waitFor()
    await shot(page, 'overview')

    // "/" from anywhere opens the search box; Enter searches.
    await page.keyboard.press('/')
    await page.getByRole('searchbox').waitFor()
    await page.keyboard.type('keyset pagination on account_id and posted_at')
    await page.keyboard.press('Enter')
    const first = page.locator('.results article').first()
    await first.waitFor()
    assert.match(await first.locator('.content').innerText(), /keyset pagination on \(account_id, posted_at, id\)/)
    assert.match(await first.locator('dl.scores').innerText(), /score[\s\S]*vector[\s\S]*text/)
    await shot(page, 'search')

    await first.getByRole('link', { name: /^session / }).click()
    await page.getByRole('heading', { name: new RegExp(`Session ${EARLIER_SESSION}`) }).waitFor()
    const timeline = page.locator('.timeline article')
    await timeline.nth(2).waitFor()
    // In the order they happened: the answer, the summary, the prompt saved last.
    const roles = await timeline.locator('.role').allInnerTexts()
    assert.deepEqual(roles.map((r) => r.toLowerCase()), ['assistant', 'note', 'user'])
    await shot(page, 'session')

    await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Injections' }).click()
    const injection = page.locator('li.injection.outcome-injected').first()
    await injection.waitFor()
    assert.match(await injection.locator('.prompt').innerText(), /What did we decide about paginating the ledger query/)
    const injected = injection.locator('li.hit.injected')
    assert.ok((await injected.count()) >= 2, 'the injected memories are listed')
    assert.match(await injected.first().innerText(), /score/)
    assert.match(await injection.innerText(), /keyset pagination|Fixed invoice export timeouts/)
    await shot(page, 'injections')

    await injected.first().getByRole('link', { name: 'record' }).click()
    await page.getByRole('heading', { name: 'Memory' }).waitFor()
    await page.locator('.record').waitFor()
    await shot(page, 'memory')

    // Delete the earlier session's answer after the confirmation, and see it gone.
    await page.goto(`${sage.url}/ui#/session?ns=billing&id=${EARLIER_SESSION}`)
    await timeline.nth(2).waitFor()
    const answerItem = timeline.filter({ hasText: 'I switched the ledger export to keyset pagination' })
    const id = await answerItem.getAttribute('data-id')
    await answerItem.getByRole('button', { name: /Delete memory/ }).click()
    const dialog = page.getByRole('dialog')
    await dialog.waitFor()
    // Escape says no: nothing is deleted.
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden' })
    assert.equal(await timeline.count(), 3)
    await answerItem.getByRole('button', { name: /Delete memory/ }).click()
    await shot(page, 'confirm-delete')
    await dialog.getByRole('button', { name: 'Delete memory' }).click()
    await answerItem.waitFor({ state: 'detached' })
    assert.equal(await timeline.count(), 2)
    const gone = await fetch(`${sage.url}/v1/memories/${id}`, { headers: { authorization: `Bearer ${SECRETS.admin}` } })
    assert.equal(gone.status, 404)

    // A narrow window: one column, still readable.
    await page.setViewportSize({ width: 390, height: 844 })
    await page.goto(`${sage.url}/ui#/injections?ns=billing`)
    await page.locator('li.injection').first().waitFor()
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth')
    assert.ok(overflow <= 0, `nothing wider than the window (${overflow} px over)`)
    await shot(page, 'narrow-injections')
    await context.close()
  })

  test('a read-only key sees the same memories and no delete button', async () => {
    const { context, page } = await signedIn(SECRETS.reader)
    await page.getByText('(read only)').waitFor()
    await page.goto(`${sage.url}/ui#/session?ns=billing&id=${EARLIER_SESSION}`)
    await page.locator('.timeline article').first().waitFor()
    assert.equal(await page.getByRole('button', { name: /Delete/ }).count(), 0)
    const id = await page.locator('.timeline article').first().getAttribute('data-id')
    await page.goto(`${sage.url}/ui#/memory?id=${id}`)
    await page.locator('.record').waitFor()
    assert.equal(await page.getByRole('button', { name: /Delete/ }).count(), 0)
    await context.close()
  })

  test('a wrong key is refused and the page stays on the sign-in form', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`${sage.url}/ui`)
    await page.getByLabel('API key').fill('not-a-key-0123456789abcdef')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByText('Sage does not accept this key.').waitFor()
    assert.equal(await page.evaluate('sessionStorage.length'), 0)
    await context.close()
  })

  test('the page ran under its Content-Security-Policy without an error', async () => {
    const res = await fetch(`${sage.url}/ui`)
    const policy = res.headers.get('content-security-policy') ?? ''
    assert.match(policy, /default-src 'none'/)
    assert.match(policy, /script-src 'self'(;|$)/)
    assert.doesNotMatch(await res.text(), /<script(?![^>]*\bsrc=)/, 'no inline script')
    assert.deepEqual(problems, [])
  })
})
