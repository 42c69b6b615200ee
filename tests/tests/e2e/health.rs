//! gRPC health and `/readyz` follow the database: NOT_SERVING while
//! PostgreSQL is unreachable, SERVING again when it is back.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::*;
use reqwest::StatusCode;
use server::pb::VerifyTokenRequest;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn status(app: &TestApp, service: &str) -> i32 {
    HealthClient::new(app.channel())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

async fn wait_for(app: &TestApp, wanted: ServingStatus) {
    let start = Instant::now();
    while status(app, "wechat.identity.v1.IdentityService").await != wanted as i32 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "health never became {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status(app, "").await,
        wanted as i32,
        "the overall status follows"
    );
}

#[tokio::test]
async fn health_is_not_serving_while_postgres_is_unreachable_and_serving_once_it_is_back() {
    let Some(app) = spawn_with(Options::on(Backend::Postgres).configure(|config| {
        config.config.server.health_check_interval = Duration::from_millis(200);
    }))
    .await
    else {
        return;
    };
    let readyz = format!("{}/readyz", app.http_base());
    wait_for(&app, ServingStatus::Serving).await;
    assert_eq!(
        app.http.get(&readyz).send().await.unwrap().status(),
        StatusCode::OK
    );

    app.set_database_reachable(false).await.unwrap();
    wait_for(&app, ServingStatus::NotServing).await;
    assert_eq!(
        status(&app, server::app::LIVENESS_SERVICE).await,
        ServingStatus::Serving as i32,
        "alive all the same: a liveness probe must not restart replicas for a database outage"
    );
    assert_eq!(
        app.http.get(&readyz).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let mut client = app.client();
    let login = client
        .mini_program_login(server::pb::MiniProgramLoginRequest {
            app_id: MINI.into(),
            code: app.sim.mint_login_code(MINI, "outage"),
        })
        .await
        .unwrap_err();
    assert_eq!(login.code(), Code::Unavailable, "{login:?}");
    assert_eq!(reason(&login), None, "storage outages carry no details");

    app.set_database_reachable(true).await.unwrap();
    wait_for(&app, ServingStatus::Serving).await;
    client
        .verify_token(VerifyTokenRequest {
            access_token: "x".into(),
        })
        .await
        .unwrap();
    app.stop().await;
}
