import { WxLike } from './wx'

/** How the tokens were obtained: a silent re-login goes the same way. */
export type LoginVia = 'code' | 'cloud'

/** What the SDK keeps in wx storage: one entry per app, written whole. */
export interface StoredTokens {
  access_token: string
  refresh_token: string
  /** Epoch milliseconds when the access token expires (by this phone's clock). */
  expires_at: number
  via: LoginVia
}

/**
 * The tokens of one app in wx storage, under `{storageKey}:{appid}`. Both tokens (and the
 * expiry) are one value, so a rotation is saved in one write: never a new access token beside a
 * spent refresh token. Storage is read on every use, so several clients (say one per page) see
 * each other's rotations.
 */
export class TokenStore {
  readonly key: string
  // Kept only when wx storage fails (full, or unavailable): tokens then last this launch.
  private fallback: StoredTokens | null = null
  private storageFailed = false

  constructor (private readonly wx: WxLike, storageKey: string, appid: string) {
    this.key = `${storageKey}:${appid}`
  }

  load (): StoredTokens | null {
    if (this.storageFailed) return this.fallback
    try {
      const value = this.wx.getStorageSync(this.key)
      return isStoredTokens(value) ? value : null
    } catch (_) {
      return this.fallback
    }
  }

  save (tokens: StoredTokens): void {
    this.fallback = tokens
    try {
      this.wx.setStorageSync(this.key, tokens)
      this.storageFailed = false
    } catch (_) {
      // Reading back the previous (now spent) tokens would be worse than reading none.
      this.storageFailed = true
      this.removeQuietly()
    }
  }

  clear (): void {
    this.fallback = null
    this.storageFailed = false
    this.removeQuietly()
  }

  private removeQuietly (): void {
    try {
      this.wx.removeStorageSync(this.key)
    } catch (_) {
      // Nothing more to do: load() checks the shape of what it reads.
    }
  }
}

/** wx storage answers '' for a missing key, and a value from another version may differ. */
function isStoredTokens (value: unknown): value is StoredTokens {
  if (value === null || typeof value !== 'object') return false
  const v = value as Record<string, unknown>
  return typeof v.access_token === 'string' && v.access_token !== '' &&
    typeof v.refresh_token === 'string' && v.refresh_token !== '' &&
    typeof v.expires_at === 'number' &&
    (v.via === 'code' || v.via === 'cloud')
}
