/**
 * Every failure the SDK reports. `code` is the service's problem `code` (`unauthorized`,
 * `content_rejected`, `rate_limited`, …; new ones may appear, so fall back on `status`) or one of
 * the SDK's own: `network_error` (no HTTP answer), `wechat_login_failed` (wx.login or the cloud
 * function failed), `invalid_response` (an answer that is not what the service sends),
 * `user_denied` (the user refused wx.getUserProfile), `wechat_api_failed` (another wx API
 * failed or is missing on this base library).
 */
export class IdentityError extends Error {
  code: string
  /** The HTTP status; 0 when there was no HTTP answer. */
  status: number
  detail?: string
  /** Seconds to wait before retrying, from `Retry-After`. */
  retryAfter?: number

  constructor (code: string, status: number, detail?: string, retryAfter?: number) {
    super(detail ? `${code}: ${detail}` : code)
    // Compiled to ES2015 classes, `instanceof` works; the name helps in logs.
    this.name = 'IdentityError'
    this.code = code
    this.status = status
    if (detail !== undefined) this.detail = detail
    if (retryAfter !== undefined) this.retryAfter = retryAfter
  }
}

/** The error for a non-2xx answer: its problem+json `code` and `detail`, else `invalid_response`. */
export function problemError (status: number, body: unknown, header?: Record<string, string>): IdentityError {
  const retryAfter = parseRetryAfter(headerValue(header, 'retry-after'))
  if (body !== null && typeof body === 'object') {
    const problem = body as { code?: unknown, detail?: unknown }
    if (typeof problem.code === 'string') {
      const detail = typeof problem.detail === 'string' ? problem.detail : undefined
      return new IdentityError(problem.code, status, detail, retryAfter)
    }
  }
  return new IdentityError('invalid_response', status, `HTTP ${status} without a problem body`, retryAfter)
}

/** wx lower-cases some header names and not others, depending on platform. */
export function headerValue (header: Record<string, string> | undefined, name: string): string | undefined {
  if (!header) return undefined
  for (const key of Object.keys(header)) {
    if (key.toLowerCase() === name) return header[key]
  }
  return undefined
}

/** `Retry-After` as seconds: delta-seconds, or an HTTP date turned into seconds from now. */
function parseRetryAfter (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const trimmed = String(value).trim()
  if (/^\d+$/.test(trimmed)) return parseInt(trimmed, 10)
  const at = Date.parse(trimmed)
  if (isNaN(at)) return undefined
  return Math.max(0, Math.ceil((at - Date.now()) / 1000))
}
