//! `wechat.identity.v1.IdentityService` over tonic: each RPC takes the caller
//! the interceptor attached and the request's deadline, runs the service, and
//! turns its [`ApiError`] into a status from the one table.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::auth::Caller;
use wechat_client::Deadline;

use crate::deadline::request_deadline;
use crate::error::ApiError;
use crate::pb;
use crate::pb::identity_service_server::IdentityService;
use crate::service::{Ctx, Services};

/// The gRPC face of [`Services`].
#[derive(Debug, Clone)]
pub struct IdentityGrpc {
    services: Arc<Services>,
    request_timeout: Duration,
}

impl IdentityGrpc {
    /// Serves `services`; calls without a shorter deadline get `request_timeout`.
    pub fn new(services: Arc<Services>, request_timeout: Duration) -> Self {
        Self {
            services,
            request_timeout,
        }
    }

    fn context<T>(&self, request: Request<T>) -> Result<(Ctx, Deadline, T), Status> {
        let deadline = request_deadline(request.metadata(), self.request_timeout);
        let caller = request
            .extensions()
            .get::<Arc<Caller>>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!("identity service reached without the caller interceptor");
                ApiError::UnauthenticatedCaller.to_status()
            })?;
        Ok((
            Ctx {
                caller,
                deadline: deadline.work,
            },
            deadline.answer,
            request.into_inner(),
        ))
    }
}

/// Runs `work`, answering DEADLINE_EXCEEDED at `answer` if it is still going
/// (the work itself stops at its own, earlier deadline wherever it can).
async fn bounded<T>(
    answer: Deadline,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    match answer.remaining() {
        Some(left) => tokio::time::timeout(left, work)
            .await
            .unwrap_or(Err(ApiError::DeadlineExceeded)),
        None => work.await,
    }
}

fn respond<T>(
    rpc: &'static str,
    ctx: &Ctx,
    result: Result<T, ApiError>,
) -> Result<Response<T>, Status> {
    match result {
        Ok(message) => {
            tracing::debug!(rpc, caller = %ctx.caller.name, "ok");
            Ok(Response::new(message))
        }
        Err(error) => {
            match &error {
                ApiError::Internal(cause) => {
                    tracing::error!(rpc, caller = %ctx.caller.name, cause = %cause, "internal error")
                }
                other => {
                    tracing::info!(rpc, caller = %ctx.caller.name, reason = other.reason().unwrap_or("UNAVAILABLE"), "refused")
                }
            }
            Err(error.to_status())
        }
    }
}

#[tonic::async_trait]
impl IdentityService for IdentityGrpc {
    async fn mini_program_login(
        &self,
        request: Request<pb::MiniProgramLoginRequest>,
    ) -> Result<Response<pb::MiniProgramLoginResponse>, Status> {
        let (ctx, answer, message) = self.context(request)?;
        let result = bounded(answer, self.services.mini_program_login(&ctx, message)).await;
        respond("MiniProgramLogin", &ctx, result)
    }

    async fn get_phone_number(
        &self,
        request: Request<pb::GetPhoneNumberRequest>,
    ) -> Result<Response<pb::GetPhoneNumberResponse>, Status> {
        let (ctx, answer, message) = self.context(request)?;
        let result = bounded(answer, self.services.phone_number(&ctx, message)).await;
        respond("GetPhoneNumber", &ctx, result)
    }

    async fn bind_user(
        &self,
        request: Request<pb::BindUserRequest>,
    ) -> Result<Response<pb::BindUserResponse>, Status> {
        let (ctx, answer, message) = self.context(request)?;
        let result = bounded(answer, self.services.bind_user(&ctx, message)).await;
        respond("BindUser", &ctx, result)
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let (ctx, answer, message) = self.context(request)?;
        let result = bounded(answer, self.services.profile(&ctx, message)).await;
        respond("GetProfile", &ctx, result)
    }

    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let (ctx, answer, message) = self.context(request)?;
        let result = bounded(answer, self.services.refresh_token(&ctx, message)).await;
        respond("RefreshToken", &ctx, result)
    }

    async fn web_login(
        &self,
        request: Request<pb::WebLoginRequest>,
    ) -> Result<Response<pb::WebLoginResponse>, Status> {
        let (ctx, answer, message) = self.context(request)?;
        let result = bounded(answer, self.services.web_login(&ctx, message)).await;
        respond("WebLogin", &ctx, result)
    }

    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Result<Response<pb::VerifyTokenResponse>, Status> {
        let (ctx, answer, message) = self.context(request)?;
        let result = bounded(answer, self.services.verify_token(&ctx, message)).await;
        respond("VerifyToken", &ctx, result)
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let (ctx, answer, message) = self.context(request)?;
        let result = bounded(answer, self.services.revoke_session(&ctx, message)).await;
        respond("RevokeSession", &ctx, result)
    }

    async fn unbind_user(
        &self,
        request: Request<pb::UnbindUserRequest>,
    ) -> Result<Response<pb::UnbindUserResponse>, Status> {
        let (ctx, answer, message) = self.context(request)?;
        let result = bounded(answer, self.services.unbind_user(&ctx, message)).await;
        respond("UnbindUser", &ctx, result)
    }

    async fn get_app_access_token(
        &self,
        request: Request<pb::GetAppAccessTokenRequest>,
    ) -> Result<Response<pb::GetAppAccessTokenResponse>, Status> {
        let (ctx, answer, message) = self.context(request)?;
        let result = bounded(answer, self.services.app_access_token(&ctx, message)).await;
        respond("GetAppAccessToken", &ctx, result)
    }
}
