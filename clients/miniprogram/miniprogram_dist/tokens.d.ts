import { WxLike } from './wx';
/** How the tokens were obtained: a silent re-login goes the same way. */
export type LoginVia = 'code' | 'cloud';
/** What the SDK keeps in wx storage: one entry per app, written whole. */
export interface StoredTokens {
    access_token: string;
    refresh_token: string;
    /** Epoch milliseconds when the access token expires (by this phone's clock). */
    expires_at: number;
    via: LoginVia;
}
/**
 * The tokens of one app in wx storage, under `{storageKey}:{appid}`. Both tokens (and the
 * expiry) are one value, so a rotation is saved in one write: never a new access token beside a
 * spent refresh token. Storage is read on every use, so several clients (say one per page) see
 * each other's rotations.
 */
export declare class TokenStore {
    private readonly wx;
    readonly key: string;
    private fallback;
    private storageFailed;
    constructor(wx: WxLike, storageKey: string, appid: string);
    load(): StoredTokens | null;
    save(tokens: StoredTokens): void;
    clear(): void;
    private removeQuietly;
}
