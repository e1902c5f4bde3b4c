import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import { PACKAGE_VERSION } from '../../package-root.js'

/** The OpenAPI document, built from the routes' own schemas, and a page to browse it at /docs. */
export default fp(
  async (fastify) => {
    await fastify.register(swagger, {
      openapi: {
        info: {
          title: 'Sage',
          description: 'Memory service for AI coding agents: save what happened in a session, recall what is relevant to the prompt at hand.',
          version: PACKAGE_VERSION
        },
        components: {
          securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A key from SAGE_API_KEYS (only when keys are configured)' } }
        },
        tags: [
          { name: 'memories', description: 'Save, read and forget' },
          { name: 'recall', description: 'Find what is relevant' },
          { name: 'hooks', description: 'Agent hooks' },
          { name: 'operations', description: 'Health and metrics' }
        ]
      }
    })
    await fastify.register(swaggerUi, { routePrefix: '/docs' })
  },
  { name: 'swagger' }
)
