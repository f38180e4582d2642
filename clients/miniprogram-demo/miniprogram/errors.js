// What a failed SDK call means to the person holding the phone. The SDK's IdentityError carries
// our problem `code` (stable, see the service's README) or one of its own: 'network_error',
// 'wechat_login_failed', 'invalid_response'. Anything else is said generically, with its code
// so a developer can look it up; no server `detail` is shown for codes we know, since those
// words are written for developers.

const MESSAGES = {
  content_rejected:
    "WeChat's content check did not accept this nickname or picture. Please choose another one.",
  network_error: 'Cannot reach the identity service. Check the network (is `identityd dev` running?) and try again.',
  wechat_login_failed: 'WeChat could not log you in just now. Please try again.',
  invalid_code: 'WeChat did not accept the code (it may have expired). Please try again.',
  wechat_unavailable: 'WeChat is busy at the moment. Please try again shortly.',
  high_risk_user: 'WeChat stopped this login as risky. Please try again later.',
  user_blocked: 'This account has been blocked by the administrator.',
  unauthorized: 'You are logged out on this device. Please log in again.',
  payload_too_large: 'This picture is too large. Please choose a smaller one.',
  unsupported_media_type: 'This picture format is not supported. Please choose a JPEG or PNG picture.',
  conflict: 'Someone else changed this at the same time. Please try again.',
  database_unavailable: 'The service is busy at the moment. Please try again shortly.',
  invalid_response: 'The service answered something this app does not understand.',
}

function describeError(err) {
  const code = (err && err.code) || 'unknown'
  if (code === 'rate_limited') {
    const wait = err.retryAfter > 0 ? ` about ${err.retryAfter} s` : ' a minute'
    return `Too many attempts. Please wait${wait} and try again.`
  }
  if (code === 'invalid_request' && err.detail) {
    return `The service refused this: ${err.detail}`
  }
  return MESSAGES[code] || `Something went wrong (${code}). Please try again.`
}

module.exports = { describeError }
