// Embeddings per second of LexicalEmbedder on one core: node --import tsx bench/lexical-embedder.bench.ts
import { LexicalEmbedder } from '../src/embedder/lexical-embedder.js'
import { pick, seededRandom as random } from '../test/support/seeded-random.js'

const TEXT_LENGTH = 500
const CORPUS_SIZE = 2_000
const BATCH_SIZE = 50
const WARMUP_MS = 500
const MEASURE_MS = 2_000

const ENGLISH_WORDS = (
  'the a of to and in is it that for on with as was be by this are from at or an not have has had we you they will ' +
  'would can could should must may session memory recall prompt answer decision agent hook save saved saving query ' +
  'queries search searching index indexed vector vectors embedding embeddings database table tables column row rows ' +
  'migration migrations schema postgres redis cache cached caching queue worker workers job jobs retry retries ' +
  'timeout timeouts error errors exception failure failed failing test tests testing build builds deploy deployed ' +
  'deployment server servers client clients request requests response responses header headers token tokens user ' +
  'users namespace namespaces ledger export exports exporting import imports pagination paginate paginating cursor ' +
  'offset limit page pages slow fast faster performance latency throughput memory leak leaks connection connections ' +
  'reset pool pooling transaction transactions commit rollback lock locks deadlock replica primary backup restore ' +
  'config configuration environment variable variables secret secrets rotate rotated rotation key keys value values ' +
  'function functions method methods class classes module modules package packages dependency dependencies version ' +
  'versions upgrade upgraded downgrade release releases branch branches merge merged conflict conflicts review ' +
  'reviewed reviewer approve approved change changes changed changing fix fixed fixes fixing bug bugs issue issues ' +
  'feature features flag flags rollout rollback monitor monitoring metric metrics alert alerts dashboard log logs ' +
  'logging trace traces span spans because decided instead rather than should use using used avoid avoided keep ' +
  'kept remove removed add added update updated delete deleted create created read write writes written parse ' +
  'parsed parser format formats output input stream streams buffer buffers file files path paths directory folder'
).split(' ')

const CHINESE_WORDS = (
  '我们 决定 把 账本 导出 改成 分页 查询 因为 数据 太多 接口 超时 了 数据库 连接 池 大小 调整 为 缓存 使用 ' +
  '记忆 会话 提示 回答 代理 钩子 保存 召回 相关 内容 向量 索引 全文 检索 排序 融合 结果 用户 命名 空间 ' +
  '配置 环境 变量 密钥 轮换 部署 发布 版本 升级 回滚 错误 异常 失败 重试 队列 任务 工作 进程 日志 监控 ' +
  '指标 告警 性能 延迟 吞吐 内存 泄漏 事务 提交 锁 死锁 备份 恢复 测试 构建 分支 合并 冲突 审查 修复 ' +
  '问题 功能 开关 文件 路径 目录 解析 格式 输出 输入 流 请求 响应 头部 令牌 服务 客户端 的 是 在 和 也 ' +
  '这个 那个 已经 需要 可以 应该 不要 避免 保持 删除 添加 更新 创建 读取 写入 很 慢 快 更好'
).split(' ')
const CHINESE_PUNCTUATION = ['，', '。', '、', '：', '；']

const IDENTIFIERS = (
  'ledgerExport exportLedger paginateQuery cursorPagination HTTPServer httpClient ERR_CONN_RESET ECONNREFUSED ' +
  'MAX_POOL_SIZE createMemoryRepository recallMemories embedBatch LexicalEmbedder pgvector tsvector to_tsquery ' +
  'userId namespaceId sessionId createdAt updatedAt isValid hasMore nextCursor parseJSON toJSON XMLHttpRequest ' +
  'getElementById useEffect useState onClose fastifyPlugin registerTypes Base64Encode sha256 v2 utf8 5000 8080 ' +
  'src/export/ledger.ts src/db/pool.ts routes/recall.ts test/helper.ts node_modules/.bin/tsx ' +
  'this.pool.query await res.json() JSON.stringify(body) process.env.DATABASE_URL'
).split(' ')
const CODE_PUNCTUATION = [' = ', '(', ')', ' { ', ' }\n', '; ', ', ', '.', ' => ', ': ', ' // ']

function corpus(seed: number, piece: (next: () => number) => string): string[] {
  const next = random(seed)
  const texts: string[] = []
  for (let i = 0; i < CORPUS_SIZE; i++) {
    let text = ''
    while (text.length < TEXT_LENGTH) text += piece(next)
    texts.push(text.slice(0, TEXT_LENGTH))
  }
  return texts
}

function randomWord(next: () => number): string {
  let word = ''
  const length = 3 + Math.floor(next() * 8)
  for (let i = 0; i < length; i++) word += String.fromCharCode(0x61 + Math.floor(next() * 26))
  return word
}

const corpora: Array<[string, string[]]> = [
  ['500-char English', corpus(1, (next) => pick(ENGLISH_WORDS, next) + (next() < 0.08 ? '. ' : ' '))],
  ['500-char Chinese', corpus(2, (next) => pick(CHINESE_WORDS, next) + (next() < 0.1 ? pick(CHINESE_PUNCTUATION, next) : ''))],
  [
    '500-char mixed code',
    corpus(3, (next) => (next() < 0.6 ? pick(IDENTIFIERS, next) : pick(ENGLISH_WORDS, next)) + pick(CODE_PUNCTUATION, next))
  ],
  // Every word new to the stem cache: the worst case, not the common one.
  ['500-char unseen words', corpus(4, (next) => randomWord(next) + ' ')]
]

/** Rates by wall clock and by this process's CPU time: on a busy machine the second is the one-core figure. */
async function run(embedder: LexicalEmbedder, texts: string[], milliseconds: number): Promise<{ wall: number; cpu: number }> {
  let count = 0
  let offset = 0
  const cpuBefore = process.cpuUsage()
  const started = performance.now()
  while (performance.now() - started < milliseconds) {
    if (offset + BATCH_SIZE > texts.length) offset = 0
    await embedder.embed(texts.slice(offset, offset + BATCH_SIZE))
    offset += BATCH_SIZE
    count += BATCH_SIZE
  }
  const wallSeconds = (performance.now() - started) / 1000
  const cpu = process.cpuUsage(cpuBefore)
  return { wall: count / wallSeconds, cpu: count / ((cpu.user + cpu.system) / 1e6) }
}

function rate(perSecond: number): string {
  return `${Math.round(perSecond).toLocaleString('en-US').padStart(9)}/s (${(1e6 / perSecond).toFixed(1).padStart(5)} µs)`
}

const embedder = new LexicalEmbedder()
console.log(`${embedder.id}, node ${process.version}, batches of ${BATCH_SIZE}, ${MEASURE_MS / 1000} s per corpus`)
console.log(`${'embeddings'.padEnd(24)} ${'by wall clock'.padEnd(25)} by CPU time`)
for (const [name, texts] of corpora) {
  await run(embedder, texts, WARMUP_MS)
  const { wall, cpu } = await run(embedder, texts, MEASURE_MS)
  console.log(`${name.padEnd(24)} ${rate(wall)}  ${rate(cpu)}`)
}
