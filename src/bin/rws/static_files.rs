//! `rws serve --static DIR`: the files of one directory over HTTP, so a
//! page using the JavaScript client is served from the same origin as its
//! socket (no CORS for negotiate). Deliberately small: GET of a file by
//! name, no listing, nothing outside DIR (no `..`, no hidden names).

use std::path::{Component, Path, PathBuf};

use actix_web::{http::header, web, HttpRequest, HttpResponse};

/// The directory `--static` names.
pub(crate) struct Root(pub(crate) PathBuf);

/// Answers `GET /NAME` with DIR/NAME (`/` and directories: `index.html`).
pub(crate) async fn serve(req: HttpRequest, root: web::Data<Root>) -> HttpResponse {
    let Some(path) = resolve(&root.0, req.path()) else {
        return HttpResponse::NotFound().finish();
    };
    let path = if path.is_dir() {
        path.join("index.html")
    } else {
        path
    };
    let file = path.clone();
    // Off the worker thread: a read may block on a slow disk.
    match web::block(move || std::fs::read(file)).await {
        Ok(Ok(body)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, content_type(&path)))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(body),
        _ => HttpResponse::NotFound().finish(),
    }
}

/// DIR joined with the request path, or `None` when the path would leave
/// DIR or names a hidden file.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for c in Path::new(url_path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(s) if !s.to_string_lossy().starts_with('.') => out.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_outside_the_directory() {
        let root = Path::new("/srv");
        assert_eq!(resolve(root, "/"), Some(PathBuf::from("/srv")));
        assert_eq!(
            resolve(root, "/dist/index.js"),
            Some(PathBuf::from("/srv/dist/index.js"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/../../b"), None);
        assert_eq!(resolve(root, "/.git/config"), None);
    }
}
