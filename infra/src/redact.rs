//! Making connection strings fit for logs: a URL's credentials (`user:password@`, a NATS token
//! `token@`, a `password=` query parameter) never reach a log line, an error or a response.

/// `raw` with its credentials replaced by `***`. Takes what the settings take: one URL, or a
/// comma-separated list of them (NATS), with or without a scheme.
pub fn url(raw: &str) -> String {
    // A password may hold a comma: each credential, up to its host's `@`, goes before the
    // list is split.
    let mut shown = String::with_capacity(raw.len());
    let mut rest = raw;
    loop {
        let (head, tail) = next_url(rest);
        shown.push_str(&one(head));
        match tail {
            Some(tail) => {
                shown.push(',');
                rest = tail;
            }
            None => return shown,
        }
    }
}

/// The first URL of a comma-separated list, and the rest after its comma. The URL ends at the
/// first comma after its authority's last `@` (or, with no `@`, after its scheme).
fn next_url(list: &str) -> (&str, Option<&str>) {
    let body_start = list.find("://").map_or(0, |at| at + 3);
    // The authority ends at the first `/`, `?` or `#`; credentials, commas included, reach up
    // to the last `@` before the next URL's scheme.
    let next_scheme = list[body_start..]
        .find("://")
        .map_or(list.len(), |at| body_start + at);
    let searchable = &list[body_start..next_scheme];
    let host_start = body_start
        + searchable
            .split(['/', '?', '#'])
            .next()
            .and_then(|authority| authority.rfind('@'))
            .map_or(0, |at| at + 1);
    match list[host_start..].find(',') {
        Some(at) => (&list[..host_start + at], Some(&list[host_start + at + 1..])),
        None => (list, None),
    }
}

/// Query parameters whose value is a secret, whatever the scheme (PostgreSQL takes
/// `password`, NATS `token`, others `secret`, `key`, `auth`...).
const SECRET_PARAMETERS: [&str; 5] = ["pass", "token", "secret", "key", "auth"];

fn one(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(at) => raw.split_at(at + 3),
        None => ("", raw),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The host follows the last `@`: everything before it is user, password or token.
    let authority = match authority.rfind('@') {
        Some(at) => format!("***{}", &authority[at..]),
        None => authority.to_owned(),
    };
    format!("{scheme}{authority}{}", redact_query(tail))
}

fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, format!("#{fragment}")),
        None => (query, String::new()),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}{fragment}", query.join("&"))
}

fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn credentials_are_replaced() {
        assert_eq!(
            url("postgres://app:s3cret@db.internal:5432/identity?sslmode=require"),
            "postgres://***@db.internal:5432/identity?sslmode=require"
        );
        assert_eq!(
            url("nats://tok3n@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
        assert_eq!(
            url("nats://u:p@a:4222,nats://u:q@b:4222"),
            "nats://***@a:4222,nats://***@b:4222"
        );
        assert_eq!(url("u:pw@host:4222"), "***@host:4222");
        // A comma in the password, alone and in a list.
        assert_eq!(
            url("postgres://identity:Tr0ub4dor,horse@db.internal/identity"),
            "postgres://***@db.internal/identity"
        );
        assert_eq!(
            url("nats://u:a,b@a:4222,nats://u:c,d@b:4222"),
            "nats://***@a:4222,nats://***@b:4222"
        );
        assert_eq!(url("u:a,b@a:4222,c:4222"), "***@a:4222,c:4222");
        // An `@` in the password itself.
        assert_eq!(url("postgres://u:p@ss@h/db"), "postgres://***@h/db");
        assert_eq!(
            url("postgres://h/db?user=app&password=s3cret&sslpassword=x#f"),
            "postgres://h/db?user=app&password=***&sslpassword=***#f"
        );
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for plain in [
            "sqlite://identity.db",
            "sqlite://.identityd/dev.db?mode=rwc",
            "nats://127.0.0.1:4222",
            "postgres://postgres@127.0.0.1:5432/test",
            "https://api.weixin.qq.com",
        ] {
            let shown = url(plain);
            assert!(!shown.contains("s3cret"));
            if !plain.contains('@') {
                assert_eq!(shown, plain);
            }
        }
    }
}
