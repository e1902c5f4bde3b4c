import { analyzeContent } from './content-analysis.js'

/** A worker of the content analyzer's pool (src/memory/content-analyzer.ts): one text per task. */
export default analyzeContent
