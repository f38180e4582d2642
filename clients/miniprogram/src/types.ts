/** Shared profile data; fields appear as the user shares them. */
export interface Profile {
  nickname?: string
  avatar_url?: string
  gender?: number
  country?: string
  province?: string
  city?: string
  language?: string
  [field: string]: unknown
}

export interface Phone {
  phone_number: string
  pure_phone_number: string
  country_code: string
}

/** The user as the service answers it at login and from `GET /v1/me`. */
export interface User {
  user_id: string
  openid: string
  /** Null unless the app is bound to an Open Platform account. */
  unionid: string | null
  /** Whether this session's login registered the user. */
  is_new_user: boolean
  /** Null until shared, and again after `withdraw('profile')`. */
  profile: Profile | null
  /** Null unless bound. */
  phone: Phone | null
}

/** One of the user's open sessions (`GET /v1/me/sessions`). */
export interface Session {
  session_id: string
  appid: string | null
  device: { user_agent?: string, platform?: string, wechat_version?: string } | null
  client_ip: string | null
  /** RFC 3339. */
  created_at: string
  last_refreshed_at: string | null
  /** True for the session of this client. */
  current?: boolean
}

export interface IdentityClientOptions {
  /** The service's base URL, e.g. `https://id.example.com` (a legal domain of the app). */
  baseUrl: string
  appid: string
  /** Prefix of the wx storage key (`{storageKey}:{appid}`); default `identityd`. */
  storageKey?: string
  /** A stand-in for the global `wx` (tests, other runtimes). */
  wx?: import('./wx').WxLike
}

export interface RequestOptions {
  /** Under `baseUrl`, e.g. `/v1/me`. */
  path: string
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** JSON body (for GET: query parameters). */
  data?: unknown
}

/** The phone-number button's event (`bindgetphonenumber`), as much of it as we read. */
export interface PhoneNumberEvent {
  detail?: { code?: string, errMsg?: string }
}

export type BindPhoneResult = { status: 'bound', user: User } | { status: 'denied' }
