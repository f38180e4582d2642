// The sessions page's decisions, free of WXML and wx so they run under Node.

// One row per session of GET /v1/me/sessions: this device first, then the others newest first
// (the order the service answers).
function sessionRows(sessions) {
  const rows = sessions.map(session => ({
    id: session.session_id,
    device: deviceName(session.device),
    since: `Logged in ${when(session.created_at)}`,
    lastSeen: session.last_refreshed_at ? `last active ${when(session.last_refreshed_at)}` : '',
    place: session.client_ip || '',
    current: session.current === true,
  }))
  return rows.filter(row => row.current).concat(rows.filter(row => !row.current))
}

// The service reads the login's user agent as {user_agent, platform, wechat_version}; any part
// may be missing (a login from curl, an old event).
function deviceName(device) {
  if (!device) return 'Unknown device'
  const parts = []
  if (device.platform) parts.push(device.platform)
  if (device.wechat_version) parts.push(`WeChat ${device.wechat_version}`)
  if (parts.length) return parts.join(' · ')
  return device.user_agent ? shorten(device.user_agent, 40) : 'Unknown device'
}

function shorten(text, max) {
  return text.length > max ? text.slice(0, max - 1) + '…' : text
}

// RFC 3339 from the service → "2026-11-25 08:00 UTC": the same on every phone, no time zone
// guessing in a demo.
function when(time) {
  const date = new Date(time)
  if (isNaN(date.getTime())) return 'at an unknown time'
  return date.toISOString().slice(0, 16).replace('T', ' ') + ' UTC'
}

module.exports = { sessionRows, deviceName, when }
