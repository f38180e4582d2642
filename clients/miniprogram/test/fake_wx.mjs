// A stand-in for the mini-program's `wx` under Node, callback style like base library 2.10.4,
// answering asynchronously (so concurrent callers really overlap), backed by FakeService.

const APPID = 'wxd000000000000001'

/** A small model of identityd: tokens, rotation with reuse detection, the user, problems. */
export class FakeService {
  constructor () {
    this.calls = [] // "METHOD /path" of every request, in order
    this.sessions = new Map() // refresh token → { live: bool }
    this.access = new Set() // valid access tokens
    this.issued = 0
    this.user = { user_id: 'u-1', openid: 'o-1', unionid: null, is_new_user: true, profile: null, phone: null }
    this.override = new Map() // "METHOD /path" → (req) => answer, to inject failures
    this.expiresIn = 900
  }

  count (route) {
    return this.calls.filter((c) => c === route).length
  }

  tokens () {
    this.issued += 1
    const access = `access-${this.issued}`
    const refresh = `refresh-${this.issued}`
    this.access.add(access)
    this.sessions.set(refresh, { live: true })
    return { access_token: access, token_type: 'Bearer', expires_in: this.expiresIn, refresh_token: refresh }
  }

  /** Every access token expires at once, as after 15 minutes. */
  expireAccessTokens () {
    this.access.clear()
  }

  /** Every session ends on the service's side (expired, or logged out elsewhere). */
  endSessions () {
    this.access.clear()
    this.sessions.clear()
  }

  handle (req) {
    const path = req.url.replace(/^http:\/\/id\.test/, '').replace(/\?.*$/, '')
    const route = `${req.method} ${path}`
    this.calls.push(route)
    // A retry loop in the SDK: stop it here (the uncaught error fails the run) rather than hang.
    if (this.calls.length > 500) throw new Error(`runaway requests: ${this.calls.slice(-3).join(', ')}`)
    if (this.override.has(route)) return this.override.get(route)(req)
    const body = req.data ? JSON.parse(req.data) : undefined
    if (route === 'POST /v1/wechat/login') {
      if (!body || body.appid !== APPID || !/^code-\d+$/.test(body.code)) return problem(400, 'invalid_code')
      return json(200, Object.assign(this.tokens(), { user: this.user }))
    }
    if (route === 'POST /v1/token/refresh') {
      const session = this.sessions.get(body.refresh_token)
      if (!session || !session.live) return problem(401, 'unauthorized')
      session.live = false // spent: presenting it again is a reuse
      return json(200, this.tokens())
    }
    const auth = (req.header && req.header.authorization) || ''
    if (!this.access.has(auth.replace(/^Bearer /, ''))) return problem(401, 'unauthorized')
    if (route === 'GET /v1/me') return json(200, this.user)
    if (route === 'PUT /v1/me/profile') {
      this.user = Object.assign({}, this.user, { profile: Object.assign({}, this.user.profile, body) })
      return { statusCode: 204, data: '' }
    }
    if (route === 'POST /v1/me/avatar') {
      this.user = Object.assign({}, this.user, { profile: { avatar_url: 'http://id.test/v1/avatars/a1' } })
      return json(200, this.user)
    }
    if (route === 'POST /v1/me/phone') {
      this.user = Object.assign({}, this.user, { phone: { phone_number: '13800138000', pure_phone_number: '13800138000', country_code: '86' } })
      return { statusCode: 204, data: '' }
    }
    if (route === 'POST /v1/logout' || route === 'DELETE /v1/me') return { statusCode: 204, data: '' }
    return problem(404, 'not_found')
  }
}

export function json (statusCode, value, header = {}) {
  return { statusCode, data: JSON.stringify(value), header: Object.assign({ 'Content-Type': 'application/json' }, header) }
}

export function problem (status, code, header = {}) {
  return {
    statusCode: status,
    data: JSON.stringify({ type: 'about:blank', title: 'Error', status, detail: `a ${code} problem`, code }),
    header: Object.assign({ 'Content-Type': 'application/problem+json' }, header)
  }
}

const later = (fn) => setTimeout(fn, 5)

/** The fake `wx`; `service.handle` answers both wx.request and wx.uploadFile. */
export function fakeWx (service = new FakeService()) {
  const storage = new Map()
  const wx = {
    service,
    storage,
    storageWrites: [], // [key, value] of every setStorageSync
    loginCalls: 0,
    loginFails: false,
    uploads: [],
    login ({ success, fail }) {
      wx.loginCalls += 1
      const n = wx.loginCalls
      later(() => wx.loginFails ? fail({ errMsg: 'login:fail network' }) : success({ code: `code-${n}`, errMsg: 'login:ok' }))
    },
    request (options) {
      // wx.delay(options) → ms lets a test make one answer arrive late.
      setTimeout(() => {
        if (wx.offline) return options.fail({ errMsg: 'request:fail timeout' })
        const res = service.handle(options)
        // dataType 'text': the body arrives as the raw string; real wx would parse only for 'json'.
        if (options.dataType === 'json') throw new Error('the SDK must parse bodies itself')
        options.success(res)
      }, (wx.delay && wx.delay(options)) || 5)
    },
    uploadFile (options) {
      wx.uploads.push({ filePath: options.filePath, name: options.name })
      later(() => {
        if (wx.offline) return options.fail({ errMsg: 'uploadFile:fail timeout' })
        const res = service.handle(Object.assign({ method: 'POST' }, options))
        options.success({ statusCode: res.statusCode, data: String(res.data), header: res.header })
      })
    },
    getStorageSync (key) {
      return storage.has(key) ? JSON.parse(storage.get(key)) : ''
    },
    setStorageSync (key, value) {
      wx.storageWrites.push([key, value])
      storage.set(key, JSON.stringify(value))
    },
    removeStorageSync (key) {
      storage.delete(key)
    }
  }
  return wx
}

export { APPID }
export const BASE_URL = 'http://id.test'
