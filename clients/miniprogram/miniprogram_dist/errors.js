"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.IdentityError = void 0;
exports.problemError = problemError;
exports.headerValue = headerValue;
/**
 * Every failure the SDK reports. `code` is the service's problem `code` (`unauthorized`,
 * `content_rejected`, `rate_limited`, …; new ones may appear, so fall back on `status`) or one of
 * the SDK's own: `network_error` (no HTTP answer), `wechat_login_failed` (wx.login or the cloud
 * function failed), `invalid_response` (an answer that is not what the service sends),
 * `user_denied` (the user refused wx.getUserProfile), `wechat_api_failed` (another wx API
 * failed or is missing on this base library).
 */
class IdentityError extends Error {
    constructor(code, status, detail, retryAfter) {
        super(detail ? `${code}: ${detail}` : code);
        // Compiled to ES2015 classes, `instanceof` works; the name helps in logs.
        this.name = 'IdentityError';
        this.code = code;
        this.status = status;
        if (detail !== undefined)
            this.detail = detail;
        if (retryAfter !== undefined)
            this.retryAfter = retryAfter;
    }
}
exports.IdentityError = IdentityError;
/** The error for a non-2xx answer: its problem+json `code` and `detail`, else `invalid_response`. */
function problemError(status, body, header) {
    const retryAfter = parseRetryAfter(headerValue(header, 'retry-after'));
    if (body !== null && typeof body === 'object') {
        const problem = body;
        if (typeof problem.code === 'string') {
            const detail = typeof problem.detail === 'string' ? problem.detail : undefined;
            return new IdentityError(problem.code, status, detail, retryAfter);
        }
    }
    return new IdentityError('invalid_response', status, `HTTP ${status} without a problem body`, retryAfter);
}
/** wx lower-cases some header names and not others, depending on platform. */
function headerValue(header, name) {
    if (!header)
        return undefined;
    for (const key of Object.keys(header)) {
        if (key.toLowerCase() === name)
            return header[key];
    }
    return undefined;
}
/** `Retry-After` as seconds: delta-seconds, or an HTTP date turned into seconds from now. */
function parseRetryAfter(value) {
    if (value === undefined)
        return undefined;
    const trimmed = String(value).trim();
    if (/^\d+$/.test(trimmed))
        return parseInt(trimmed, 10);
    const at = Date.parse(trimmed);
    if (isNaN(at))
        return undefined;
    return Math.max(0, Math.ceil((at - Date.now()) / 1000));
}
