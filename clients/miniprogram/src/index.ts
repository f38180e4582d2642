// identityd-miniprogram: the mini-program side of identityd. See README.md.
export { IdentityClient } from './client'
export { IdentityError } from './errors'
export type { BindPhoneResult, IdentityClientOptions, Phone, PhoneNumberEvent, Profile, RequestOptions, Session, User } from './types'
export type { WxLike } from './wx'
