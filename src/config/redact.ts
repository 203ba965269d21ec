/**
 * A URL as tidecast prints it (logs, `check-config`, errors): the password
 * of its userinfo replaced by `***` (`mqtt://user:***@host`), a lone token
 * (`mqtt://token@host`) too. The configuration keeps the real URL for the
 * connection; only what is shown is redacted.
 */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/@]*)@/i, (_m, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return `${scheme}${colon >= 0 ? `${userinfo.slice(0, colon)}:***` : '***'}@`;
  });
}
