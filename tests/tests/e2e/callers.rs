//! Caller authentication, permissions, reflection and health on the real service.
#![allow(clippy::unwrap_used)]

use e2e::*;
use server::pb::{GetAppAccessTokenRequest, VerifyTokenRequest};
use tonic::Code;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
use wechat_sim::Endpoint;

async fn calls_without_the_right_key_are_unauthenticated(backend: Backend) {
    let app = spawn!(backend);
    let request = || VerifyTokenRequest {
        access_token: "x".into(),
    };
    for header in [
        None,
        Some("Bearer wrong-key-wrong-key-wrong-key-wrong"),
        Some(&*format!("Basic {CORE_KEY}")),
    ] {
        let status = app
            .client_with(header)
            .verify_token(request())
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_deref()),
            (Code::Unauthenticated, Some("UNAUTHENTICATED_CALLER"))
        );
    }
    assert!(app.client().verify_token(request()).await.is_ok());
    app.stop().await;
}

async fn only_admin_callers_get_the_app_access_token_and_it_is_the_shared_one(backend: Backend) {
    let app = spawn!(backend);
    let request = || GetAppAccessTokenRequest {
        app_id: MINI.into(),
    };
    let denied = app
        .client()
        .get_app_access_token(request())
        .await
        .unwrap_err();
    assert_eq!(
        (denied.code(), reason(&denied).as_deref()),
        (Code::PermissionDenied, Some("CALLER_NOT_PERMITTED"))
    );
    let token = app
        .admin()
        .get_app_access_token(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        Some(token.access_token.clone()),
        app.sim.current_stable_token(MINI)
    );
    let again = app
        .admin()
        .get_app_access_token(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.access_token, token.access_token);
    assert_eq!(
        app.sim.calls(Endpoint::StableToken),
        1,
        "served from the cache"
    );
    app.stop().await;
}

async fn reflection_v1alpha_lists_the_identity_service_like_grpcurl(backend: Backend) {
    let app = spawn!(backend);
    let mut reflection = ServerReflectionClient::new(app.channel());
    let list = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let describe = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "wechat.identity.v1.IdentityService.MiniProgramLogin".into(),
        )),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([list, describe]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(services)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = services.service.into_iter().map(|s| s.name).collect();
    assert!(
        names
            .iter()
            .any(|n| n == "wechat.identity.v1.IdentityService"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "grpc.health.v1.Health"),
        "{names:?}"
    );
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected the file describing the method");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    app.stop().await;
}

on_both_backends!(
    calls_without_the_right_key_are_unauthenticated,
    only_admin_callers_get_the_app_access_token_and_it_is_the_shared_one,
    reflection_v1alpha_lists_the_identity_service_like_grpcurl,
);
