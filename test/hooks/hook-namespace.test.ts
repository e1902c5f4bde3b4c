import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { createHookNamespace, NAMESPACE_PATTERN, parseNamespaceMap, sanitizeNamespace } from '../../src/hooks/hook-namespace.js'

test('the folder holding .git names the namespace, from any folder below it', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'sage-ns-'))
  t.after(() => rm(root, { recursive: true, force: true }))
  const repo = join(root, 'billing-service')
  await mkdir(join(repo, '.git'), { recursive: true })
  await mkdir(join(repo, 'src', 'export'), { recursive: true })
  // A worktree or submodule has a .git file, not a folder.
  const worktree = join(root, 'billing-hotfix')
  await mkdir(join(worktree, 'lib'), { recursive: true })
  await writeFile(join(worktree, '.git'), 'gitdir: ../billing-service/.git/worktrees/hotfix\n')

  const namespaceOf = createHookNamespace(undefined)
  assert.equal(await namespaceOf(repo), 'billing-service')
  assert.equal(await namespaceOf(join(repo, 'src', 'export')), 'billing-service')
  assert.equal(await namespaceOf(`${join(repo, 'src')}/`), 'billing-service')
  assert.equal(await namespaceOf(join(worktree, 'lib')), 'billing-hotfix')
})

test('without a repository on this machine, the last segment of cwd names it', async () => {
  const namespaceOf = createHookNamespace(undefined)
  assert.equal(await namespaceOf('/home/dev/src/billing'), 'billing')
  assert.equal(await namespaceOf('/home/dev/src/billing/'), 'billing')
  assert.equal(await namespaceOf('C:\\Users\\dev\\src\\Web App'), 'Web-App')
  assert.equal(await namespaceOf('relative/dir'), 'dir')
  assert.equal(await namespaceOf('/'), 'default')
  assert.equal(await namespaceOf(undefined), 'default')
  assert.equal(await namespaceOf('   '), 'default')
})

test('HOOK_NAMESPACE_MAP prefixes win, longest first, on whole path segments', async () => {
  const namespaceOf = createHookNamespace('/home/dev/src/billing=billing-team, /home/dev/src/billing/api=billing-api;/opt/x/=ops')
  assert.equal(await namespaceOf('/home/dev/src/billing'), 'billing-team')
  assert.equal(await namespaceOf('/home/dev/src/billing/web'), 'billing-team')
  assert.equal(await namespaceOf('/home/dev/src/billing/api/v2'), 'billing-api')
  assert.equal(await namespaceOf('/opt/x'), 'ops')
  // A prefix of the name, not of the path: not a match.
  assert.equal(await namespaceOf('/home/dev/src/billing-old'), 'billing-old')
})

test('a bad HOOK_NAMESPACE_MAP is refused with the offending part named', () => {
  assert.throws(() => parseNamespaceMap('/src/a'), /"\/src\/a" is not PATH=NAMESPACE/)
  assert.throws(() => parseNamespaceMap('/src/a=has space'), /namespace "has space"/)
  assert.throws(() => parseNamespaceMap('=x'), /is not PATH=NAMESPACE/)
  assert.deepEqual(parseNamespaceMap(''), [])
  assert.deepEqual(parseNamespaceMap(' /a=b ,'), [{ prefix: '/a', namespace: 'b' }])
})

test('folder names become valid namespaces', () => {
  const cases: Array<[string, string]> = [
    ['billing', 'billing'],
    ['My Project (old)', 'My-Project-old'],
    ['café-crème', 'cafe-creme'],
    ['.hidden', 'hidden'],
    ['@scope/pkg', '@scope/pkg'],
    ['x'.repeat(300), 'x'.repeat(128)]
  ]
  for (const [name, expected] of cases) assert.equal(sanitizeNamespace(name), expected, name)
  const cyrillic = sanitizeNamespace('проект')
  assert.match(cyrillic, /^project-[0-9a-f]{10}$/)
  assert.notEqual(cyrillic, sanitizeNamespace('другой'))
  for (const name of ['проект', 'a b', '🙂', '...', '--x--']) assert.match(sanitizeNamespace(name), NAMESPACE_PATTERN, name)
})
