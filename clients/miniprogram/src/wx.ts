// The few `wx` APIs the SDK uses, callback style as base library 2.10.4 offers them (newer
// libraries also return promises; we never rely on it). Tests and the end-to-end runner pass
// their own object of this shape; in a mini-program it is the global `wx`.

export interface WxCallbacks<T> {
  success?: (res: T) => void
  fail?: (err: { errMsg: string }) => void
}

export interface WxRequestOptions extends WxCallbacks<WxResponse> {
  url: string
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE'
  data?: string
  header?: Record<string, string>
  /** 'text' (anything but 'json'): the SDK parses the body itself. */
  dataType?: string
  responseType?: 'text'
}

export interface WxResponse {
  /** A string when `dataType` is not 'json'; stand-ins may hand over parsed JSON. */
  data: unknown
  statusCode: number
  header?: Record<string, string>
}

export interface WxUploadFileOptions extends WxCallbacks<WxUploadResponse> {
  url: string
  filePath: string
  name: string
  header?: Record<string, string>
  formData?: Record<string, string>
}

export interface WxUploadResponse {
  /** Always a string: wx.uploadFile never parses the answer. */
  data: string
  statusCode: number
  /** Not sent by every base library. */
  header?: Record<string, string>
}

export interface WxGetUserProfileResult {
  rawData: string
  signature: string
  encryptedData: string
  iv: string
}

export interface WxLike {
  login(options: WxCallbacks<{ code: string }> & { timeout?: number }): void
  request(options: WxRequestOptions): unknown
  uploadFile(options: WxUploadFileOptions): unknown
  getStorageSync(key: string): unknown
  setStorageSync(key: string, value: unknown): void
  removeStorageSync(key: string): void
  /** Base library 2.10.4+; absent before. */
  getUserProfile?(options: WxCallbacks<WxGetUserProfileResult> & { desc: string, lang?: string }): void
  /** WeChat cloud development, once `wx.cloud.init()` has run. */
  cloud?: {
    callFunction(options: WxCallbacks<{ result: unknown }> & { name: string, data?: unknown }): unknown
  }
}

declare const wx: WxLike | undefined

/** The global `wx`, looked up only when no stand-in was given (there is none under Node). */
export function globalWx (): WxLike {
  if (typeof wx === 'undefined') {
    throw new Error('identityd-miniprogram: no global wx here; pass { wx } to IdentityClient')
  }
  return wx
}
