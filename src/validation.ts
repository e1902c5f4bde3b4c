import { Ajv, type Options } from 'ajv'
import addFormatsModule from 'ajv-formats'
import type { FastifySchemaCompiler } from 'fastify'

// ajv-formats is CommonJS; under NodeNext its default export is the module object.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default

const shared: Options = { allErrors: false, useDefaults: true, removeAdditional: false, strict: false }
// A JSON body keeps its types: "8" is not a number, 123 is not a string.
const bodyAjv = addFormats(new Ajv({ ...shared, coerceTypes: false }))
// Query strings and path parameters are text on the wire, so they are coerced to the declared types.
const urlAjv = addFormats(new Ajv({ ...shared, coerceTypes: 'array' }))

/** Strict types for bodies, coercion for URL parts, unknown fields refused everywhere a schema closes them. */
export const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) => {
  const ajv = httpPart === 'body' ? bodyAjv : urlAjv
  return ajv.compile(schema as object) as ReturnType<FastifySchemaCompiler<unknown>>
}
