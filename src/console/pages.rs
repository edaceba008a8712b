//! Which page a path names, and the page: the view computed once, rendered as JSON or HTML.

use serde_json::json;

use super::view::{
    Filter, PoolView, RequestDetail, RequestList, RouteStats, RoutesView, plans_for,
};
use super::{Console, Page, html};

/// Which page a path names.
enum Route {
    Requests,
    Request(u64),
    Routes,
    Pool,
}

/// Renders `path` (as the console sees it) with `query`, links under `base`.
pub(super) fn render(console: &Console, path: &str, query: &str, base: &str) -> Page {
    let path = if path.is_empty() { "/" } else { path };
    let (api, rest) = match path.strip_prefix("/api") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => (true, rest),
        _ => (false, path),
    };
    let rest = rest.trim_end_matches('/');
    let route = match rest {
        "" if !api => Some(Route::Requests),
        "/requests" => Some(Route::Requests),
        "/routes" => Some(Route::Routes),
        "/pool" => Some(Route::Pool),
        _ => rest
            .strip_prefix("/requests/")
            .and_then(|id| id.parse().ok())
            .map(Route::Request),
    };
    let filter = Filter::parse(query);
    let not_found = |what: &str| {
        if api {
            Page::json(404, &json!({ "error": format!("not found: {what}") }))
        } else {
            Page::html(404, html::not_found(base, what))
        }
    };
    match route {
        None => not_found(path),
        Some(Route::Requests) => {
            let rows = console.with_kept(|kept, evicted| RequestList::new(kept, evicted, &filter));
            if api {
                Page::json(200, &rows.json())
            } else {
                Page::html(200, html::requests(base, &rows, &filter))
            }
        }
        Some(Route::Request(id)) => {
            let found = console.with_kept(|kept, _| {
                kept.iter()
                    .find(|k| k.id == id)
                    .map(|k| (k.id, k.at, k.report.clone()))
            });
            let Some((id, at, report)) = found else {
                return not_found(&format!("request {id} (only the newest are kept)"));
            };
            let plans = console.with_pools(|pools| plans_for(&report, pools));
            let detail = RequestDetail::new(id, at, report, plans);
            if api {
                Page::json(200, &detail.json())
            } else {
                Page::html(200, html::request(base, &detail))
            }
        }
        Some(Route::Routes) => {
            let routes = console.with_kept(|kept, _| RouteStats::all(kept));
            let pools = console.with_pools(|pools| pools.iter().map(PoolView::new).collect());
            let view = RoutesView { routes, pools };
            if api {
                Page::json(200, &view.json())
            } else {
                Page::html(200, html::routes(base, &view))
            }
        }
        Some(Route::Pool) => {
            let pools: Vec<PoolView> =
                console.with_pools(|pools| pools.iter().map(PoolView::new).collect());
            if api {
                Page::json(
                    200,
                    &json!({ "pools": pools.iter().map(PoolView::json).collect::<Vec<_>>() }),
                )
            } else {
                Page::html(200, html::pool(base, &pools))
            }
        }
    }
}
