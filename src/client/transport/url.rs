//! URLs on the way to a socket: where the auth token goes, whether a
//! negotiate answer may move the socket, and what logs may show of a URL.

use awc::http::Uri;

use crate::{options::ClientOptions, Error, Result};

/// Whether negotiate's `url` stays where the application sent the client:
/// the same host and port, and no downgrade from `wss` to `ws` (an upgrade
/// from `ws` to `wss` may go from port 80 to 443). Otherwise the auth token
/// would go to a host the application never named, or in clear text
/// (docs/PROTOCOL.md §1); [`ClientOptions::allow_negotiate_redirect`]
/// lifts the check. The error names neither URL (a query may hold a
/// secret).
pub(super) fn check_same_origin(from: &str, to: &str) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::Negotiate(format!(
            "the negotiate response moves the socket {why}; not followed (set allow_negotiate_redirect to allow it)"
        )))
    };
    let parse = |u: &str| -> Option<(bool, String, u16)> {
        let uri: Uri = u.parse().ok()?;
        let secure = match uri.scheme_str()?.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return None,
        };
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        Some((secure, host, port))
    };
    let (Some(a), Some(b)) = (parse(from), parse(to)) else {
        return refuse("to a URL that is not ws:// or wss://");
    };
    if a.0 && !b.0 {
        return refuse("from wss to ws");
    }
    if a.1 != b.1 {
        return refuse("to another host");
    }
    let upgrade_default_ports = !a.0 && b.0 && a.2 == 80 && b.2 == 443;
    if a.2 != b.2 && !upgrade_default_ports {
        return refuse("to another port");
    }
    Ok(())
}

/// Where the auth token goes: in the `Authorization` header (the token is
/// returned for it), or, when `auth_token_query_param` opts in, in that
/// query parameter of the returned URL (and no header).
pub(super) fn place_token<'t>(
    opts: &ClientOptions,
    url: &str,
    token: Option<&'t str>,
) -> (String, Option<&'t str>) {
    match (&opts.auth_token_query_param, token) {
        (Some(name), Some(t)) => (with_query_param(url, name, t), None),
        _ => (url.to_owned(), token),
    }
}

/// `url` with `name=value` (the value percent-encoded) added to its query,
/// before any fragment.
pub(crate) fn with_query_param(url: &str, name: &str, value: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len() + name.len() + value.len() * 3 + 2);
    out.push_str(base);
    if !base.contains('?') {
        out.push('?');
    } else if !base.ends_with(['?', '&']) {
        out.push('&');
    }
    out.push_str(name);
    out.push('=');
    // RFC 3986: everything but the unreserved characters is escaped.
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    out.extend(percent_encoding::utf8_percent_encode(value, ESCAPED));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A URL for logs and errors: the query string may carry a token and the
/// user info a password, so both are cut (and a fragment dropped).
pub(crate) fn redact_query(url: &str) -> String {
    let url = url.split_once('#').map_or(url, |(u, _)| u);
    let (base, query) = match url.split_once('?') {
        Some((b, _)) => (b, "?<redacted>"),
        None => (url, ""),
    };
    let (scheme, rest) = match base.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, base),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("<redacted>@{host}"),
        None => authority.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{path}{query}"),
        None => format!("{authority}{path}{query}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_is_added_and_encoded() {
        let q = |u: &str, v: &str| with_query_param(u, "access_token", v);
        assert_eq!(q("ws://h/ws", "abc"), "ws://h/ws?access_token=abc");
        assert_eq!(q("ws://h/ws?x=1", "abc"), "ws://h/ws?x=1&access_token=abc");
        assert_eq!(q("ws://h/ws?", "abc"), "ws://h/ws?access_token=abc");
        assert_eq!(q("ws://h/ws?x&", "a"), "ws://h/ws?x&access_token=a");
        assert_eq!(q("ws://h/ws#f", "a"), "ws://h/ws?access_token=a#f");
        assert_eq!(
            q("ws://h/ws", "a b+c/=&é"),
            "ws://h/ws?access_token=a%20b%2Bc%2F%3D%26%C3%A9"
        );
        assert_eq!(
            q("ws://h/ws", "A-z_0.9~"),
            "ws://h/ws?access_token=A-z_0.9~"
        );
    }

    #[test]
    fn the_token_goes_in_the_header_unless_opted_in() {
        let mut opts = ClientOptions::default();
        assert_eq!(
            place_token(&opts, "ws://h/ws", Some("t")),
            ("ws://h/ws".to_owned(), Some("t"))
        );
        opts.auth_token_query_param = Some("access_token".into());
        assert_eq!(
            place_token(&opts, "ws://h/ws", Some("t")),
            ("ws://h/ws?access_token=t".to_owned(), None)
        );
        assert_eq!(
            place_token(&opts, "ws://h/ws", None),
            ("ws://h/ws".to_owned(), None)
        );
    }

    #[test]
    fn negotiate_url_must_stay_on_the_same_origin() {
        let ok = |a: &str, b: &str| assert!(check_same_origin(a, b).is_ok(), "{a} -> {b}");
        let no = |a: &str, b: &str| {
            let e = check_same_origin(a, b).unwrap_err().to_string();
            assert!(e.contains("allow_negotiate_redirect"), "{e}");
            assert!(!e.contains("secret"), "{e}");
        };
        ok("ws://h:1/ws", "ws://h:1/other?x=1");
        ok("ws://H:1/ws", "ws://h:1/ws");
        ok("ws://h/ws", "wss://h/ws");
        ok("ws://h:80/ws", "wss://h/ws");
        ok("wss://h/ws", "wss://h:443/ws");
        ok("ws://h:1/ws", "wss://h:1/ws");
        no("wss://h/ws", "ws://h/ws");
        no("wss://h/ws", "ws://h:443/ws");
        no("ws://h:1/ws", "ws://other:1/ws?t=secret");
        no("ws://h:1/ws", "ws://h:2/ws");
        no("ws://h:1/ws", "wss://h/ws");
        no("ws://h/ws", "http//bad");
        no("ws://h/ws", "ftp://h/ws");
    }

    #[test]
    fn redacted_urls_show_no_query_or_user_info() {
        let r = redact_query;
        assert_eq!(r("ws://h/ws?access_token=t"), "ws://h/ws?<redacted>");
        assert_eq!(r("ws://h/ws?a=1#x"), "ws://h/ws?<redacted>");
        assert_eq!(r("ws://h:1/ws#x"), "ws://h:1/ws");
        assert_eq!(r("wss://u:pw@h/ws?t=1"), "wss://<redacted>@h/ws?<redacted>");
        assert_eq!(r("http://u@h"), "http://<redacted>@h");
        assert_eq!(r("ws://h/a@b"), "ws://h/a@b");
        assert_eq!(r("h/ws?x"), "h/ws?<redacted>");
        assert_eq!(r("ws://[::1]:80/ws"), "ws://[::1]:80/ws");
    }
}
