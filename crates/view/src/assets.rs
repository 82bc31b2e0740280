//! The pages' static parts, compiled into the binary: one HTML shell per page, a stylesheet and
//! one script that fills the page from the JSON API (plain DOM, no framework, no CDN).

use axum::response::Html;

pub(crate) const APP_JS: &str = include_str!("../assets/app.js");
pub(crate) const STYLE_CSS: &str = include_str!("../assets/style.css");

/// The shell of page `name` (`run`, `experiment`, `tasks`, `trial`, `meta`).
pub(crate) fn page(name: &'static str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>autoagent view</title>
<link rel="stylesheet" href="/assets/style.css">
</head>
<body data-page="{name}">
<header class="top">
<a class="brand" href="/">autoagent</a>
<nav><a href="/" data-nav="run">Run</a><a href="/tasks" data-nav="tasks">Tasks</a></nav>
<span id="live" class="live" title="updates when the workspace's files change">connecting…</span>
</header>
<main id="app"><p class="muted">Loading…</p></main>
<script src="/assets/app.js"></script>
</body>
</html>
"#
    ))
}
