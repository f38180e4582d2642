// The profile page's decisions, free of WXML and wx so they run under Node.

// The service's rule for a nickname (PUT /v1/me/profile): 1 to 64 characters.
const NICKNAME_MAX = 64

// What the page shows of a user from GET /v1/me (or the login answer).
function profileView(user) {
  const profile = (user && user.profile) || {}
  const phone = user && user.phone
  return {
    nickname: profile.nickname || '',
    avatarUrl: profile.avatar_url || '',
    phone: phone ? maskPhone(phone.pure_phone_number || phone.phone_number || '') : '',
  }
}

// 138****5678: enough for the owner to recognise it, not for the person beside them to read it.
function maskPhone(number) {
  if (number.length < 7) return number
  return number.slice(0, 3) + '****' + number.slice(-4)
}

// The updateProfile() argument for what the user changed, or the reason there is nothing to send.
// `avatarTempFilePath` is chooseAvatar's local temporary file; the SDK uploads it.
function saveRequest({ nickname, savedNickname, avatarTempFilePath }) {
  const request = {}
  const name = (nickname || '').trim()
  if (name !== (savedNickname || '')) {
    if (!name) return { error: 'Please enter a nickname.' }
    // Characters as the service counts them (Unicode scalar values), not UTF-16 units.
    if (Array.from(name).length > NICKNAME_MAX) {
      return { error: `A nickname has at most ${NICKNAME_MAX} characters.` }
    }
    if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return { error: 'A nickname cannot hold control characters.' }
    request.nickname = name
  }
  if (avatarTempFilePath) request.avatarTempFilePath = avatarTempFilePath
  if (!Object.keys(request).length) return { error: 'Nothing changed: choose an avatar or edit the nickname.' }
  return { request }
}

// bindnicknamereview (base library 2.29.1+): WeChat's own check of the nickname typed in.
// A timeout is no verdict, so the service's check decides then.
function nicknameReviewMessage(detail) {
  if (!detail || detail.pass || detail.timeout) return ''
  return "WeChat's check did not accept this nickname. Please choose another one."
}

// WeChat's image check answers after the upload; a risky verdict makes the service drop the
// avatar (AvatarRejected), which the page learns when it reads the user again.
const AVATAR_REMOVED = "WeChat's content check removed your avatar. Please choose another one."

function avatarRemoved(shownAvatarUrl, user) {
  return Boolean(shownAvatarUrl) && !profileView(user).avatarUrl
}

// bindPhone's answer in words. Refusing is the user's right: thank them, don't nag.
function phoneOutcome(result) {
  if (result.status === 'denied') {
    return { kind: 'info', text: 'No problem: your phone number was not shared. You can share it any time later.' }
  }
  return { kind: 'info', text: 'Phone number linked.' }
}

module.exports = {
  NICKNAME_MAX,
  AVATAR_REMOVED,
  profileView,
  maskPhone,
  saveRequest,
  nicknameReviewMessage,
  avatarRemoved,
  phoneOutcome,
}
