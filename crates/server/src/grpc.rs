//! `wechat.identity.v1.IdentityService` over tonic: each RPC takes the caller
//! the interceptor attached and the request's deadline, checks the caller's
//! permissions against [`crate::permissions`], runs the service, and turns its
//! [`ApiError`] into a status from the one table.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::auth::Caller;
use wechat_client::Deadline;

use crate::deadline::request_deadline;
use crate::error::ApiError;
use crate::pb;
use crate::pb::identity_service_server::IdentityService;
use crate::permissions::{self, Guarded};
use crate::service::{Ctx, Services};

/// The gRPC face of [`Services`].
#[derive(Debug, Clone)]
pub(crate) struct IdentityGrpc {
    services: Arc<Services>,
    request_timeout: Duration,
}

impl IdentityGrpc {
    /// Serves `services`; calls without a shorter deadline get `request_timeout`.
    pub(crate) fn new(services: Arc<Services>, request_timeout: Duration) -> Self {
        Self {
            services,
            request_timeout,
        }
    }

    /// Serves `request` with `work`, in the contract's order: the caller's
    /// key (checked by the interceptor), then the permissions the table names
    /// for the request, and only then `work`, which checks the fields.
    async fn serve<Req, Res, F, Fut>(
        &self,
        request: Request<Req>,
        work: F,
    ) -> Result<Response<Res>, Status>
    where
        Req: Guarded + Send + 'static,
        Res: Send + 'static,
        F: FnOnce(Arc<Services>, Ctx, Req) -> Fut,
        Fut: std::future::Future<Output = Result<Res, ApiError>> + Send + 'static,
    {
        let (call, message) = self.begin(request)?;
        if let Err(refused) = permissions::check(&call.ctx.caller, &message) {
            return call.reply(Err(refused));
        }
        call.finish(|services, ctx| work(services, ctx, message))
            .await
    }

    /// Starts serving `request`: its caller (attached by the interceptor), its
    /// deadline, its request id and a span that every log line of the call
    /// carries.
    fn begin<T: Guarded>(&self, request: Request<T>) -> Result<(Call, T), Status> {
        let rpc = T::RPC;
        let deadline = request_deadline(request.metadata(), self.request_timeout);
        let request_id = request_id(request.metadata());
        let caller = request
            .extensions()
            .get::<Arc<Caller>>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!("identity service reached without the caller interceptor");
                ApiError::UnauthenticatedCaller.to_status()
            })?;
        let span = tracing::info_span!(
            "rpc",
            rpc,
            caller = %caller.name,
            request_id = %request_id,
            trace_id = tracing::field::Empty,
            code = tracing::field::Empty,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        crate::telemetry::mark_grpc_span(&span, rpc);
        crate::telemetry::adopt_parent(&span, |key| {
            request
                .metadata()
                .get(key)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        });
        let call = Call {
            rpc,
            started: std::time::Instant::now(),
            services: self.services.clone(),
            ctx: Ctx {
                caller,
                deadline: deadline.work,
            },
            answer: deadline.answer,
            span,
            request_id,
        };
        Ok((call, request.into_inner()))
    }
}

/// The metadata a caller may set to correlate its logs with ours; echoed back.
const REQUEST_ID: &str = "x-request-id";

/// The caller's `x-request-id` when it is a sane id (1..=64 of
/// `[A-Za-z0-9._-]`), else a new UUID v7.
fn request_id(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// One call in progress.
#[derive(Debug)]
struct Call {
    rpc: &'static str,
    started: std::time::Instant,
    services: Arc<Services>,
    ctx: Ctx,
    answer: Deadline,
    span: tracing::Span,
    request_id: String,
}

impl Call {
    /// Runs `work` in a task of its own, inside the call's span, and answers
    /// from it by the call's deadline, with the request id in the metadata.
    ///
    /// The task runs to its end even when the answer is cut short (deadline,
    /// or the caller went away): work that claimed a code or a ticket always
    /// gets to record what became of it, instead of stopping between writes.
    async fn finish<T, F, Fut>(&self, work: F) -> Result<Response<T>, Status>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Services>, Ctx) -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let task = tokio::spawn(
            work(self.services.clone(), self.ctx.clone()).instrument(self.span.clone()),
        );
        let joined = async {
            task.await
                .unwrap_or_else(|failed| Err(ApiError::internal(failed.to_string())))
        };
        let result = bounded(self.answer, joined)
            .instrument(self.span.clone())
            .await;
        self.reply(result)
    }

    /// Answers with `result`: logged in the call's span, counted, and with
    /// the request id in the metadata.
    fn reply<T>(&self, result: Result<T, ApiError>) -> Result<Response<T>, Status> {
        let mut answer = self.span.in_scope(|| respond(&self.span, result));
        let code = answer
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        // In the call's span, so that the latency's exemplar names its trace.
        self.span.in_scope(|| {
            self.services
                .metrics
                .rpc(self.rpc, code, self.started.elapsed());
        });
        if let Ok(id) = tonic::metadata::MetadataValue::try_from(self.request_id.as_str()) {
            let metadata = match &mut answer {
                Ok(response) => response.metadata_mut(),
                Err(status) => status.metadata_mut(),
            };
            metadata.insert(REQUEST_ID, id);
        }
        answer
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

/// The answer for `result`, logged in the call's span (which names the RPC,
/// the caller and the request id): internal causes at ERROR, refusals at INFO
/// with their reason.
fn respond<T>(span: &tracing::Span, result: Result<T, ApiError>) -> Result<Response<T>, Status> {
    match result {
        Ok(message) => {
            span.record("code", "OK");
            crate::telemetry::answer_grpc_span(span, tonic::Code::Ok, None);
            tracing::debug!("ok");
            Ok(Response::new(message))
        }
        Err(error) => {
            let status = error.to_status();
            span.record("code", tracing::field::debug(status.code()));
            crate::telemetry::answer_grpc_span(span, status.code(), error.reason());
            match &error {
                ApiError::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
                other => {
                    tracing::info!(reason = other.reason().unwrap_or("UNAVAILABLE"), "refused")
                }
            }
            Err(status)
        }
    }
}

#[tonic::async_trait]
impl IdentityService for IdentityGrpc {
    async fn mini_program_login(
        &self,
        request: Request<pb::MiniProgramLoginRequest>,
    ) -> Result<Response<pb::MiniProgramLoginResponse>, Status> {
        self.serve(request, |services, ctx, message| async move {
            services.mini_program_login(&ctx, message).await
        })
        .await
    }

    async fn get_phone_number(
        &self,
        request: Request<pb::GetPhoneNumberRequest>,
    ) -> Result<Response<pb::GetPhoneNumberResponse>, Status> {
        self.serve(request, |services, ctx, message| async move {
            services.phone_number(&ctx, message).await
        })
        .await
    }

    async fn bind_user(
        &self,
        request: Request<pb::BindUserRequest>,
    ) -> Result<Response<pb::BindUserResponse>, Status> {
        self.serve(request, |services, ctx, message| async move {
            services.bind_user(&ctx, message).await
        })
        .await
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        self.serve(request, |services, ctx, message| async move {
            services.profile(&ctx, message).await
        })
        .await
    }

    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        self.serve(request, |services, ctx, message| async move {
            services.refresh_token(&ctx, message).await
        })
        .await
    }

    async fn web_login(
        &self,
        request: Request<pb::WebLoginRequest>,
    ) -> Result<Response<pb::WebLoginResponse>, Status> {
        self.serve(request, |services, ctx, message| async move {
            services.web_login(&ctx, message).await
        })
        .await
    }

    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Result<Response<pb::VerifyTokenResponse>, Status> {
        self.serve(request, |services, ctx, message| async move {
            services.verify_token(&ctx, message).await
        })
        .await
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        self.serve(request, |services, ctx, message| async move {
            services.revoke_session(&ctx, message).await
        })
        .await
    }

    async fn unbind_user(
        &self,
        request: Request<pb::UnbindUserRequest>,
    ) -> Result<Response<pb::UnbindUserResponse>, Status> {
        self.serve(request, |services, ctx, message| async move {
            services.unbind_user(&ctx, message).await
        })
        .await
    }

    async fn get_app_access_token(
        &self,
        request: Request<pb::GetAppAccessTokenRequest>,
    ) -> Result<Response<pb::GetAppAccessTokenResponse>, Status> {
        self.serve(request, |services, ctx, message| async move {
            services.app_access_token(&ctx, message).await
        })
        .await
    }
}
