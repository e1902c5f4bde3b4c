import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Command } from '../../src/commands/command.js'
import { commandUsage, HelpRequested, parseCommandArgs, runCommand, UsageError } from '../../src/commands/parse-command-args.js'

const OPTIONS = { namespace: { type: 'string' }, json: { type: 'boolean', default: false } } as const

test('parseCommandArgs gives typed values and positionals, and takes "-" and --flag=-x as values', () => {
  const { values, positionals } = parseCommandArgs(['status', '--namespace', '-', '--json'], OPTIONS, true)
  assert.deepEqual({ ...values }, { namespace: '-', json: true })
  assert.deepEqual(positionals, ['status'])
  assert.equal(parseCommandArgs(['--namespace=-x'], OPTIONS).values.namespace, '-x')
})

test('parseCommandArgs names what was typed: an unknown option, a missing or unwanted value, an unexpected argument', () => {
  const refused = (args: string[], message: string, positionals = false) =>
    assert.throws(() => parseCommandArgs(args, OPTIONS, positionals), (error: unknown) => error instanceof UsageError && error.message === message)
  refused(['--namspace', 'x'], 'unknown option --namspace')
  refused(['-x'], 'unknown option -x')
  refused(['--namespace'], '--namespace needs a value')
  refused(['--namespace', '--json'], '--namespace needs a value')
  refused(['--json=yes'], '--json takes no value')
  refused(['extra'], 'unexpected argument "extra"')
  assert.throws(() => parseCommandArgs(['-h'], OPTIONS), HelpRequested)
  assert.throws(() => parseCommandArgs(['status', '--help'], {}, true), HelpRequested)
})

test('runCommand answers a usage error with the message and the usage on stderr, exit 2; --help with the usage on stdout, exit 0', async (t) => {
  const command: Command = {
    summary: 'a test command',
    usage: 'one [--json]   the first action\ntwo            the second\n  details, indented',
    async run(args) {
      parseCommandArgs(args, OPTIONS, true)
      return 0
    }
  }
  assert.equal(commandUsage('demo', command), 'Usage: sage-memory demo one [--json]   the first action\n       sage-memory demo two            the second\n  details, indented')
  assert.equal(commandUsage('bare', { summary: 'no arguments', run: async () => 0 }), 'Usage: sage-memory bare\n  no arguments')

  const errors: string[] = []
  const logs: string[] = []
  t.mock.method(console, 'error', (line: string) => errors.push(line))
  t.mock.method(console, 'log', (line: string) => logs.push(line))
  assert.equal(await runCommand('demo', command, ['--nope']), 2)
  assert.deepEqual(errors, [`sage-memory demo: unknown option --nope\n\n${commandUsage('demo', command)}`])
  assert.equal(await runCommand('demo', command, ['--help']), 0)
  assert.deepEqual(logs, [commandUsage('demo', command)])
  assert.equal(await runCommand('demo', command, ['one']), 0)
})
