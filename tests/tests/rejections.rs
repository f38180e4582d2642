//! Issue 11 item 5: refused logins do not grow the event log, yet admins see them (audit log,
//! daily stats, metrics) from a bounded store that erasure and retention empty.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use api::usecases::rejections::MAX_ROWS_PER_APP_DAY;
use futures::StreamExt;
use identity_tests::{assert_problem, both_backends, World, APP_A, APP_B};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

both_backends! {
    World:
    ten_thousand_addresses_of_invalid_codes_add_no_events,
    refused_logins_are_audited_counted_and_erased,
}

/// `POST /v1/wechat/login` with an invalid code from `source` (any 127.0.0.0/8 address is
/// this machine's): the client IP the service sees, without trusting any header. Returns the
/// status.
async fn invalid_login_from(server: SocketAddr, source: Ipv4Addr) -> u16 {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind a loopback address");
    let mut stream = socket.connect(server).await.expect("connect");
    let body = json!({ "appid": APP_A, "code": "never-issued" }).to_string();
    let request = format!(
        "POST /v1/wechat/login HTTP/1.1\r\nhost: identityd\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let status = String::from_utf8_lossy(&answer[..12.min(answer.len())]).into_owned();
    status[9..].trim().parse().expect("a status line")
}

async fn ten_thousand_addresses_of_invalid_codes_add_no_events(world: World) {
    // The login limiter is on, as in production: each address stays under it.
    let app = world
        .spawn_instance(|config| config.login_rate_per_minute = 120)
        .await;
    let server: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let before = world.log().await.len();
    let statuses: Vec<u16> = futures::stream::iter(0..10_000u32)
        .map(|i| {
            let [_, _, b, c] = (i + 256).to_be_bytes();
            invalid_login_from(server, Ipv4Addr::new(127, 1, b, c))
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 400),
        "every one refused as invalid_code"
    );
    let added = world.log().await.len() - before;
    assert!(added <= 100, "{added} events from 10,000 refused logins");

    // Admins still see all of them: counted by reason, and in the audit log as tallies whose
    // rows are bounded (addresses past the day's cap are counted without their address).
    let admin = world.api_key("admin:read").await;
    let stats = world
        .get_json(&admin, &format!("/v1/admin/stats/daily?appid={APP_A}"))
        .await;
    let today = &stats["days"]
        .as_array()
        .expect("days")
        .last()
        .expect("today")
        .clone();
    assert_eq!(
        today["rejected_logins"],
        json!({ "invalid_code": 10_000 }),
        "{stats}"
    );
    let tallies = world
        .all_pages(&admin, "/v1/admin/audit?action=LoginRejected&limit=200")
        .await;
    let attempts: i64 = tallies
        .iter()
        .map(|item| item["details"]["attempts"].as_i64().expect("attempts"))
        .sum();
    assert_eq!(attempts, 10_000);
    assert_eq!(
        tallies.len(),
        MAX_ROWS_PER_APP_DAY as usize + 1,
        "the cap, plus the folded row"
    );
}

async fn refused_logins_are_audited_counted_and_erased(world: World) {
    let writer = world.api_key("admin:read,admin:write").await;
    let login = world.login(APP_A, "blocked-one").await;
    let user_id = login.user_id.clone();
    let blocked = world
        .admin_action(&writer, &user_id, "block", "abuse")
        .await;
    assert_eq!(blocked.status(), 200, "{:?}", blocked.text().await);
    for appid in [APP_A, APP_A, APP_B] {
        let code = world.wx_login(appid, "blocked-one").await;
        assert_problem(world.login_with(appid, &code).await, 403, "user_blocked").await;
    }
    let never_issued = world.login_with(APP_B, "never-issued").await;
    assert_problem(never_issued, 400, "invalid_code").await;

    // The audit log names the blocked user (so it can be found, and erased) and the address.
    let audit = |query: String| {
        let (world, writer) = (&world, &writer);
        async move {
            world
                .items(writer, &format!("/v1/admin/audit?{query}"))
                .await
        }
    };
    let theirs = audit(format!("user_id={user_id}&action=LoginRejected")).await;
    assert_eq!(theirs.len(), 2, "one tally per app: {theirs:?}");
    let in_a = theirs
        .iter()
        .find(|item| item["appid"] == APP_A)
        .expect("APP_A's tally");
    assert_eq!(in_a["details"]["attempts"], 2);
    assert_eq!(in_a["details"]["reason"], "blocked");
    assert_eq!(in_a["actor"], "system");
    assert_eq!(in_a["target"], user_id.as_str());
    assert_eq!(in_a["client_ip"], "127.0.0.1");
    assert!(in_a["position"].as_i64().expect("position") < 0, "{in_a}");
    let everyone = audit("action=LoginRejected".into()).await;
    assert_eq!(everyone.len(), 3, "{everyone:?}");
    // Filters that cannot match a refused login leave them out.
    assert!(audit("actor=admin:nobody&action=LoginRejected".into())
        .await
        .is_empty());

    // Events and tallies page together: small pages walk the same list as one big page,
    // newest first, each entry once.
    world
        .wait_for_projections(std::time::Duration::from_secs(5))
        .await;
    let whole = audit("limit=200".into()).await;
    assert!(whole.iter().any(|item| item["action"] == "UserBlocked"));
    let walked = world.all_pages(&writer, "/v1/admin/audit?limit=2").await;
    assert_eq!(walked, whole);
    let keys: Vec<_> = whole
        .iter()
        .map(|item| {
            let time = item["occurred_at"].as_str().expect("time");
            let time = chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339");
            (time, item["position"].as_i64().expect("position"))
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "{keys:?}");

    // Counted on /metrics by app and reason.
    let metrics = world.get("/metrics").await.text().await.expect("text");
    for line in [
        format!("identity_login_rejections_total{{appid=\"{APP_A}\",reason=\"blocked\"}} 2"),
        format!("identity_login_rejections_total{{appid=\"{APP_B}\",reason=\"blocked\"}} 1"),
        format!("identity_login_rejections_total{{appid=\"{APP_B}\",reason=\"invalid_code\"}} 1"),
    ] {
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }

    // Erasure deletes the user's tallies (with their addresses); the anonymous one stays.
    let erased = world
        .delete_as(&writer, &format!("/v1/admin/users/{user_id}"))
        .await;
    assert_eq!(erased.status(), 204);
    assert!(audit(format!("user_id={user_id}&action=LoginRejected"))
        .await
        .is_empty());
    let left = audit("action=LoginRejected".into()).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["details"]["reason"], "invalid_code");
}
