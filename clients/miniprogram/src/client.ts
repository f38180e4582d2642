import { IdentityError, problemError } from './errors'
import { HttpAnswer, NOT_JSON, request as httpRequest, upload } from './http'
import { SingleFlight } from './single_flight'
import { LoginVia, StoredTokens, TokenStore } from './tokens'
import {
  BindPhoneResult, IdentityClientOptions, PhoneNumberEvent, RequestOptions, Session, User
} from './types'
import { globalWx, WxLike } from './wx'

/** Refresh this long before the access token expires, so that a request rarely meets a 401. */
const REFRESH_AHEAD_MS = 60 * 1000
/** `GET /v1/me/sessions` pages: the service's largest, and a bound on how many we follow. */
const SESSIONS_PAGE_LIMIT = 200
const SESSIONS_MAX_PAGES = 10
const DEFAULT_CLOUD_FUNCTION = 'login'
const DEFAULT_PROFILE_DESC = '用于完善会员资料'

interface Signedin {
  user: User
  tokens: StoredTokens
}

/** A session lost for good (refresh refused): log in again silently, or report it. */
type WhenLost = 'login' | 'report'

interface Flights {
  login: SingleFlight<Signedin>
  renew: SingleFlight<StoredTokens>
}

// Per wx and storage entry, not per client: two clients of one app (one per page, say) must not
// refresh the same single-use refresh token side by side, or the service sees a reuse and
// revokes the session.
const flightsByWx = new WeakMap<WxLike, { [key: string]: Flights }>()

function flightsFor (wx: WxLike, key: string): Flights {
  let byKey = flightsByWx.get(wx)
  if (!byKey) {
    byKey = {}
    flightsByWx.set(wx, byKey)
  }
  if (!byKey[key]) byKey[key] = { login: new SingleFlight(), renew: new SingleFlight() }
  return byKey[key]
}

export class IdentityClient {
  private readonly wx: WxLike
  private readonly baseUrl: string
  private readonly appid: string
  private readonly store: TokenStore
  private readonly flights: Flights
  // How a silent login goes when storage has no tokens to tell: the last explicit way.
  private via: LoginVia = 'code'
  private cloudFunction = DEFAULT_CLOUD_FUNCTION

  constructor (options: IdentityClientOptions) {
    if (!options || typeof options.baseUrl !== 'string' || options.baseUrl === '') {
      throw new TypeError('IdentityClient: baseUrl is required')
    }
    if (typeof options.appid !== 'string' || options.appid === '') {
      throw new TypeError('IdentityClient: appid is required')
    }
    this.wx = options.wx || globalWx()
    this.baseUrl = options.baseUrl.replace(/\/+$/, '')
    this.appid = options.appid
    this.store = new TokenStore(this.wx, options.storageKey || 'identityd', options.appid)
    this.flights = flightsFor(this.wx, this.store.key)
  }

  /** Silent login: wx.login, then `POST /v1/wechat/login`. Concurrent callers share one. */
  login (): Promise<User> {
    this.via = 'code'
    return this.signIn('code').then((s) => s.user)
  }

  /** Login through the shipped cloud function (WeChat cloud development), saved the same way. */
  cloudLogin (options?: { name?: string }): Promise<User> {
    this.via = 'cloud'
    this.cloudFunction = (options && options.name) || DEFAULT_CLOUD_FUNCTION
    return this.signIn('cloud').then((s) => s.user)
  }

  /** Whether tokens are stored (they may still turn out to be expired or revoked). */
  isLoggedIn (): boolean {
    return this.store.load() !== null
  }

  /**
   * A call to the service as the user: logs in first when there are no tokens; on a 401,
   * refreshes once and retries once; when the refresh is refused, logs in once and retries
   * once. Answers the parsed JSON body (`undefined` for 204).
   */
  request<T> (options: RequestOptions): Promise<T> {
    // The bearer token goes to this service only: `@evil.example/x` or `//evil.example`
    // appended to the base URL would send it elsewhere.
    if (!/^\/(?![/\\])/.test(options.path)) {
      return Promise.reject(new IdentityError('invalid_request', 0, 'path must start with a single /'))
    }
    const method = options.method || 'GET'
    const path = method === 'GET' ? withQuery(options.path, options.data) : options.path
    const data = method === 'GET' ? undefined : options.data
    return this.authorized((token) => httpRequest(this.wx, {
      url: this.baseUrl + path, method, header: bearer(token), data
    }), 'login').then((answer) => json<T>(answer))
  }

  me (): Promise<User> {
    return this.request<User>({ path: '/v1/me' })
  }

  /**
   * The avatar/nickname fill-in: the avatar (chooseAvatar's temporary file) is uploaded first,
   * then the nickname is set; answers the user as it then is. A refused nickname
   * (`content_rejected`) leaves the uploaded avatar in place.
   */
  async updateProfile (update: { nickname?: string, avatarTempFilePath?: string }): Promise<User> {
    if (update.avatarTempFilePath) {
      const filePath = update.avatarTempFilePath
      await this.authorized((token) => upload(this.wx, {
        url: this.baseUrl + '/v1/me/avatar', filePath, name: 'file', header: bearer(token)
      }), 'login')
    }
    if (update.nickname !== undefined) {
      await this.request<void>({ path: '/v1/me/profile', method: 'PUT', data: { nickname: update.nickname } })
    }
    return this.me()
  }

  /** From `bindgetphonenumber`'s event; a refusal (no `detail.code`) is `{ status: 'denied' }`. */
  async bindPhone (event: PhoneNumberEvent): Promise<BindPhoneResult> {
    const code = event && event.detail && event.detail.code
    if (!code) return { status: 'denied' }
    await this.request<void>({ path: '/v1/me/phone', method: 'POST', data: { code } })
    return { status: 'bound', user: await this.me() }
  }

  /**
   * Legacy profile for base libraries whose wx.getUserProfile still answers real data: call it
   * from a tap handler, after login() (the data is sealed with the session key of the latest
   * wx.login). Answers the user with the shared profile.
   */
  async authorizeLegacyProfile (options?: { desc?: string }): Promise<User> {
    const desc = (options && options.desc) || DEFAULT_PROFILE_DESC
    const profile = await getUserProfile(this.wx, desc)
    await this.request<void>({
      path: '/v1/me/profile/authorize',
      method: 'POST',
      data: {
        raw_data: profile.rawData,
        signature: profile.signature,
        encrypted_data: profile.encryptedData,
        iv: profile.iv
      }
    })
    return this.me()
  }

  /** Withdraw what the user shared: the data stops being shown. */
  async withdraw (kind: 'profile' | 'phone'): Promise<void> {
    if (kind !== 'profile' && kind !== 'phone') {
      throw new TypeError("withdraw: kind is 'profile' or 'phone'")
    }
    await this.request<void>({ path: `/v1/me/authorizations/${kind}`, method: 'DELETE' })
  }

  /** The user's open sessions, newest first; `current` marks this one. */
  async sessions (): Promise<Session[]> {
    const all: Session[] = []
    let cursor: string | undefined
    for (let page = 0; page < SESSIONS_MAX_PAGES; page++) {
      const data: { limit: number, cursor?: string } = { limit: SESSIONS_PAGE_LIMIT }
      if (cursor) data.cursor = cursor
      const answer = await this.request<{ items?: Session[], next_cursor?: string | null }>({
        path: '/v1/me/sessions', data
      })
      if (!answer || !Array.isArray(answer.items)) {
        throw new IdentityError('invalid_response', 200, 'sessions: no items')
      }
      all.push(...answer.items)
      if (!answer.next_cursor) break
      cursor = answer.next_cursor
    }
    return all
  }

  /** End one of the user's sessions ("log out this device" for another device). */
  async endSession (sessionId: string): Promise<void> {
    await this.request<void>({ path: `/v1/me/sessions/${encodeURIComponent(sessionId)}`, method: 'DELETE' })
  }

  /**
   * End this session (`POST /v1/logout`). Storage is cleared whatever happens; a failure other
   * than "already ended" is still reported, since the session may then stay open on the service
   * until it expires.
   */
  async logout (): Promise<void> {
    if (!this.store.load()) return
    try {
      await this.authorized((token) => httpRequest(this.wx, {
        url: this.baseUrl + '/v1/logout', method: 'POST', header: bearer(token)
      }), 'report')
    } catch (err) {
      if (!(err instanceof IdentityError && err.status === 401)) throw err
    } finally {
      this.store.clear()
    }
  }

  /** Erase the user's personal data (`DELETE /v1/me`); storage is cleared whatever happens. */
  async eraseMe (): Promise<void> {
    try {
      await this.request<void>({ path: '/v1/me', method: 'DELETE' })
    } finally {
      this.store.clear()
    }
  }

  // The 401 discipline: at most one renewal and one retry per call, so never a loop.
  private async authorized (send: (accessToken: string) => Promise<HttpAnswer>, whenLost: WhenLost): Promise<HttpAnswer> {
    let tokens = await this.usableTokens(whenLost)
    let answer = await send(tokens.access_token)
    if (answer.status === 401) {
      tokens = await this.renew(tokens, whenLost)
      answer = await send(tokens.access_token)
    }
    if (answer.status < 200 || answer.status >= 300) {
      throw problemError(answer.status, answer.body, answer.header)
    }
    return answer
  }

  private async usableTokens (whenLost: WhenLost): Promise<StoredTokens> {
    const tokens = this.store.load()
    if (!tokens) {
      if (whenLost === 'report') throw notLoggedIn()
      return (await this.signIn(this.via)).tokens
    }
    if (Date.now() >= tokens.expires_at - REFRESH_AHEAD_MS) return this.renew(tokens, whenLost)
    return tokens
  }

  /** New tokens in place of `stale`: one refresh however many callers; a login if it is refused. */
  private renew (stale: StoredTokens, whenLost: WhenLost): Promise<StoredTokens> {
    const current = this.store.load()
    // Another caller renewed already (our 401 was for the access token it replaced).
    if (current && current.access_token !== stale.access_token) return Promise.resolve(current)
    return this.flights.renew.run(() => this.refresh(current || stale, whenLost))
  }

  private async refresh (tokens: StoredTokens, whenLost: WhenLost): Promise<StoredTokens> {
    const answer = await httpRequest(this.wx, {
      url: this.baseUrl + '/v1/token/refresh',
      method: 'POST',
      header: {},
      data: { refresh_token: tokens.refresh_token }
    })
    if (answer.status === 200) {
      const renewed = tokensOf(answer.body, tokens.via)
      this.store.save(renewed)
      return renewed
    }
    if (answer.status !== 401) throw problemError(answer.status, answer.body, answer.header)
    // Spent, reused, revoked or past its lifetime: this session is over for good.
    this.store.clear()
    if (whenLost === 'report') throw problemError(answer.status, answer.body, answer.header)
    return (await this.signIn(tokens.via)).tokens
  }

  private signIn (via: LoginVia): Promise<Signedin> {
    return this.flights.login.run(() => via === 'cloud' ? this.loginWithCloud() : this.loginWithCode())
  }

  private async loginWithCode (): Promise<Signedin> {
    const code = await wxLogin(this.wx)
    const answer = await httpRequest(this.wx, {
      url: this.baseUrl + '/v1/wechat/login',
      method: 'POST',
      header: {},
      data: { appid: this.appid, code }
    })
    if (answer.status !== 200) throw problemError(answer.status, answer.body, answer.header)
    return this.adopt(answer.body, 'code')
  }

  private async loginWithCloud (): Promise<Signedin> {
    const result = await callCloudFunction(this.wx, this.cloudFunction)
    return this.adopt(result, 'cloud')
  }

  private adopt (body: unknown, via: LoginVia): Signedin {
    const tokens = tokensOf(body, via)
    const user = (body as { user?: User }).user
    if (!user || typeof user !== 'object' || typeof user.user_id !== 'string') {
      throw new IdentityError('invalid_response', 200, 'login answer without a user')
    }
    const replaced = this.store.load()
    this.store.save(tokens)
    if (replaced) this.endQuietly(replaced)
    return { user, tokens }
  }

  // A login on a phone that already had a session (login() at every launch, say) replaces it:
  // end the old one, so the user's session list shows this phone once. Best effort: an expired
  // access token cannot, and the old session then ends by its idle lifetime.
  private endQuietly (replaced: StoredTokens): void {
    if (Date.now() >= replaced.expires_at) return
    const ignore = (): void => undefined
    httpRequest(this.wx, {
      url: this.baseUrl + '/v1/logout', method: 'POST', header: bearer(replaced.access_token)
    }).then(ignore, ignore)
  }
}

function bearer (token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` }
}

function notLoggedIn (): IdentityError {
  return new IdentityError('unauthorized', 401, 'not logged in')
}

function json<T> (answer: HttpAnswer): T {
  if (answer.body === NOT_JSON) {
    throw new IdentityError('invalid_response', answer.status, 'the answer is not JSON')
  }
  return answer.body as T
}

/** The token fields of a login or refresh answer, checked: storage must never hold half. */
function tokensOf (body: unknown, via: LoginVia): StoredTokens {
  const b = (body || {}) as { access_token?: unknown, refresh_token?: unknown, expires_in?: unknown }
  if (typeof b.access_token !== 'string' || b.access_token === '' ||
      typeof b.refresh_token !== 'string' || b.refresh_token === '' ||
      typeof b.expires_in !== 'number') {
    throw new IdentityError('invalid_response', 200, 'an answer without tokens')
  }
  return {
    access_token: b.access_token,
    refresh_token: b.refresh_token,
    expires_at: Date.now() + b.expires_in * 1000,
    via
  }
}

function withQuery (path: string, data: unknown): string {
  if (data === undefined || data === null || typeof data !== 'object') return path
  const record = data as Record<string, unknown>
  const pairs = Object.keys(record)
    .filter((key) => record[key] !== undefined && record[key] !== null)
    .map((key) => `${encodeURIComponent(key)}=${encodeURIComponent(String(record[key]))}`)
  if (pairs.length === 0) return path
  return path + (path.indexOf('?') < 0 ? '?' : '&') + pairs.join('&')
}

function wxLogin (wx: WxLike): Promise<string> {
  return new Promise((resolve, reject) => {
    wx.login({
      success: (res) => {
        if (res && res.code) resolve(res.code)
        else reject(new IdentityError('wechat_login_failed', 0, 'wx.login gave no code'))
      },
      fail: (err) => reject(new IdentityError('wechat_login_failed', 0, (err && err.errMsg) || 'wx.login failed'))
    })
  })
}

function callCloudFunction (wx: WxLike, name: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (!wx.cloud || typeof wx.cloud.callFunction !== 'function') {
      reject(new IdentityError('wechat_api_failed', 0, 'wx.cloud is missing: call wx.cloud.init() first'))
      return
    }
    wx.cloud.callFunction({
      name,
      success: (res) => resolve(res && res.result),
      fail: (err) => reject(new IdentityError('wechat_login_failed', 0, (err && err.errMsg) || 'the cloud function failed'))
    })
  })
}

function getUserProfile (wx: WxLike, desc: string): Promise<{ rawData: string, signature: string, encryptedData: string, iv: string }> {
  return new Promise((resolve, reject) => {
    if (typeof wx.getUserProfile !== 'function') {
      reject(new IdentityError('wechat_api_failed', 0, 'wx.getUserProfile needs base library 2.10.4 or later'))
      return
    }
    wx.getUserProfile({
      desc,
      success: resolve,
      fail: (err) => {
        const errMsg = (err && err.errMsg) || 'wx.getUserProfile failed'
        const refused = /deny|cancel/.test(errMsg)
        reject(new IdentityError(refused ? 'user_denied' : 'wechat_api_failed', 0, errMsg))
      }
    })
  })
}
