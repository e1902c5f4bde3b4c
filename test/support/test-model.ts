/**
 * A tiny sentence-embedding model written by the tests, since no real one can be downloaded here.
 *
 * The folder has the layout transformers.js loads for a BERT-style model: `config.json`, `tokenizer.json` and
 * `tokenizer_config.json` (a WordPiece tokenizer over a small vocabulary, lowercased, with [CLS] and [SEP]) and
 * `onnx/model.onnx`, whose graph is one Gather: each token id picks its row of an embedding table, and
 * `last_hidden_state` is those rows. transformers.js then mean-pools and normalises them, as it would a real model.
 *
 * Words of one concept share a row ("rotate", "renew"; "keys", "credentials"), so a paraphrase lands near its
 * original: a crude but honest semantic model, which the lexical embedder cannot imitate. Unknown words map to
 * [UNK], whose row is small; [CLS], [SEP] and [PAD] have zero rows, so they do not pull texts together.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import onnxProto from 'onnx-proto'

const { onnx } = onnxProto

export const TEST_MODEL_DIMENSION = 24

/** Each group is one concept: its words embed alike. */
const CONCEPTS: readonly (readonly string[])[] = [
  ['rotate', 'rotation', 'renew', 'renewal', 'refresh', 'replace'],
  ['api', 'key', 'keys', 'credential', 'credentials', 'secret', 'secrets', 'token', 'tokens'],
  ['monthly', 'month', 'often', 'schedule', 'every', 'periodically'],
  ['ledger', 'export', 'report', 'invoice', 'invoices', 'billing'],
  ['paginate', 'pagination', 'page', 'pages', 'cursor', 'keyset'],
  ['deploy', 'deployment', 'release', 'ship', 'rollout', 'friday'],
  ['database', 'postgres', 'store', 'table', 'rows', 'sql'],
  ['slow', 'latency', 'timeout', 'lag', 'sluggish', 'delay'],
  ['cache', 'redis', 'memo', 'cached', 'caching'],
  ['test', 'tests', 'suite', 'ci', 'check', 'checks']
]
/** Words that carry little meaning share a weak row of their own. */
const FILLER = ['the', 'a', 'an', 'we', 'do', 'how', 'is', 'are', 'of', 'to', 'and', 'in', 'on', 'with', 'now', 'uses', 'use']
const SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']

export interface TestModel {
  dir: string
  /** Files of the folder, relative to it, as a hub serves them. */
  files: string[]
  dimension: number
}

/** Deterministic numbers in [-1, 1), so every run writes the same model: the fraction of a large sine, a shader's hash. */
function numbers(seed: number): () => number {
  let n = seed
  return () => {
    const x = Math.sin(n++) * 43_758.5453
    return (x - Math.floor(x)) * 2 - 1
  }
}

function vocabulary(): string[] {
  return [...SPECIAL, ...CONCEPTS.flat(), ...FILLER]
}

function embeddingTable(words: readonly string[], dimension: number): Float32Array {
  const next = numbers(20_241_121)
  const conceptRows = CONCEPTS.map(() => Array.from({ length: dimension }, next))
  const fillerRow = Array.from({ length: dimension }, () => next() * 0.05)
  const unknownRow = Array.from({ length: dimension }, () => next() * 0.2)
  const table = new Float32Array(words.length * dimension)
  words.forEach((word, id) => {
    const concept = CONCEPTS.findIndex((group) => group.includes(word))
    const row = concept >= 0 ? conceptRows[concept]! : FILLER.includes(word) ? fillerRow : word === '[UNK]' ? unknownRow : undefined
    // A little of each word's own direction: words of one concept are close, not identical.
    const own = Array.from({ length: dimension }, () => next() * 0.1)
    if (row) for (let d = 0; d < dimension; d++) table[id * dimension + d] = row[d]! + (concept >= 0 ? own[d]! : 0)
  })
  return table
}

/** The ONNX graph: `last_hidden_state = Gather(embeddings, input_ids)`; the other two inputs are what BERT takes. */
function modelBytes(table: Float32Array, vocabularySize: number, dimension: number): Uint8Array {
  const int64 = onnx.TensorProto.DataType.INT64
  const float = onnx.TensorProto.DataType.FLOAT
  const dims = (...names: Array<string | number>) => ({ dim: names.map((n) => (typeof n === 'number' ? { dimValue: n } : { dimParam: n })) })
  const input = (name: string) => ({ name, type: { tensorType: { elemType: int64, shape: dims('batch', 'sequence') } } })
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'sage-memory tests',
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'token-embedding-lookup',
      node: [{ opType: 'Gather', input: ['embeddings', 'input_ids'], output: ['last_hidden_state'], name: 'lookup' }],
      initializer: [{ name: 'embeddings', dataType: float, dims: [vocabularySize, dimension], rawData: new Uint8Array(table.buffer, table.byteOffset, table.byteLength) }],
      input: [input('input_ids'), input('attention_mask'), input('token_type_ids')],
      output: [{ name: 'last_hidden_state', type: { tensorType: { elemType: float, shape: dims('batch', 'sequence', dimension) } } }]
    }
  })
  return onnx.ModelProto.encode(model).finish()
}

function tokenizerJson(words: readonly string[]): unknown {
  const special = (content: string, id: number) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })
  const template = (id: string) => ({ SpecialToken: { id, type_id: 0 } })
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map((token) => special(token, words.indexOf(token))),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [template('[CLS]'), { Sequence: { id: 'A', type_id: 0 } }, template('[SEP]')],
      pair: [template('[CLS]'), { Sequence: { id: 'A', type_id: 0 } }, template('[SEP]'), { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
      special_tokens: Object.fromEntries(['[CLS]', '[SEP]'].map((token) => [token, { id: token, ids: [words.indexOf(token)], tokens: [token] }]))
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(words.map((word, id) => [word, id]))
    }
  }
}

/** Writes the model into `dir` (created if missing) and says what it wrote. */
export async function writeTestModel(dir: string, options: { dimension?: number; maxLength?: number; missingRows?: number } = {}): Promise<TestModel> {
  const dimension = options.dimension ?? TEST_MODEL_DIMENSION
  const words = vocabulary()
  // A table short of the last words' rows makes a model that fails on texts using them ("use", "uses"), like a broken export.
  const rows = words.length - (options.missingRows ?? 0)
  const files: Record<string, string | Uint8Array> = {
    'config.json': JSON.stringify({ model_type: 'bert', architectures: ['BertModel'], hidden_size: dimension, vocab_size: words.length, max_position_embeddings: 512, pad_token_id: 0 }),
    'tokenizer_config.json': JSON.stringify({
      tokenizer_class: 'BertTokenizer',
      do_lower_case: true,
      model_max_length: options.maxLength ?? 128,
      cls_token: '[CLS]',
      sep_token: '[SEP]',
      pad_token: '[PAD]',
      unk_token: '[UNK]',
      mask_token: '[MASK]'
    }),
    'tokenizer.json': JSON.stringify(tokenizerJson(words)),
    'onnx/model.onnx': modelBytes(embeddingTable(words, dimension).subarray(0, rows * dimension), rows, dimension)
  }
  await mkdir(join(dir, 'onnx'), { recursive: true })
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content)
  return { dir, files: Object.keys(files), dimension }
}
