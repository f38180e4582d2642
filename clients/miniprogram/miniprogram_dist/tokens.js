"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.TokenStore = void 0;
/**
 * The tokens of one app in wx storage, under `{storageKey}:{appid}`. Both tokens (and the
 * expiry) are one value, so a rotation is saved in one write: never a new access token beside a
 * spent refresh token. Storage is read on every use, so several clients (say one per page) see
 * each other's rotations.
 */
class TokenStore {
    constructor(wx, storageKey, appid) {
        this.wx = wx;
        // Kept only when wx storage fails (full, or unavailable): tokens then last this launch.
        this.fallback = null;
        this.storageFailed = false;
        this.key = `${storageKey}:${appid}`;
    }
    load() {
        if (this.storageFailed)
            return this.fallback;
        try {
            const value = this.wx.getStorageSync(this.key);
            return isStoredTokens(value) ? value : null;
        }
        catch (_) {
            return this.fallback;
        }
    }
    save(tokens) {
        this.fallback = tokens;
        try {
            this.wx.setStorageSync(this.key, tokens);
            this.storageFailed = false;
        }
        catch (_) {
            // Reading back the previous (now spent) tokens would be worse than reading none.
            this.storageFailed = true;
            this.removeQuietly();
        }
    }
    clear() {
        this.fallback = null;
        this.storageFailed = false;
        this.removeQuietly();
    }
    removeQuietly() {
        try {
            this.wx.removeStorageSync(this.key);
        }
        catch (_) {
            // Nothing more to do: load() checks the shape of what it reads.
        }
    }
}
exports.TokenStore = TokenStore;
/** wx storage answers '' for a missing key, and a value from another version may differ. */
function isStoredTokens(value) {
    if (value === null || typeof value !== 'object')
        return false;
    const v = value;
    return typeof v.access_token === 'string' && v.access_token !== '' &&
        typeof v.refresh_token === 'string' && v.refresh_token !== '' &&
        typeof v.expires_at === 'number' &&
        (v.via === 'code' || v.via === 'cloud');
}
