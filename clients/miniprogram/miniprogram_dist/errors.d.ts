/**
 * Every failure the SDK reports. `code` is the service's problem `code` (`unauthorized`,
 * `content_rejected`, `rate_limited`, …; new ones may appear, so fall back on `status`) or one of
 * the SDK's own: `network_error` (no HTTP answer), `wechat_login_failed` (wx.login or the cloud
 * function failed), `invalid_response` (an answer that is not what the service sends),
 * `user_denied` (the user refused wx.getUserProfile), `wechat_api_failed` (another wx API
 * failed or is missing on this base library).
 */
export declare class IdentityError extends Error {
    code: string;
    /** The HTTP status; 0 when there was no HTTP answer. */
    status: number;
    detail?: string;
    /** Seconds to wait before retrying, from `Retry-After`. */
    retryAfter?: number;
    constructor(code: string, status: number, detail?: string, retryAfter?: number);
}
/** The error for a non-2xx answer: its problem+json `code` and `detail`, else `invalid_response`. */
export declare function problemError(status: number, body: unknown, header?: Record<string, string>): IdentityError;
/** wx lower-cases some header names and not others, depending on platform. */
export declare function headerValue(header: Record<string, string> | undefined, name: string): string | undefined;
