//! Logs and traces. Logs: JSON lines in production, human-readable lines in
//! the demo, the level from `RUST_LOG` (passed in, not read here); every line
//! of a call carries its span (RPC, caller, request id) and, with traces on,
//! the trace id. Traces: OpenTelemetry over OTLP/gRPC when an endpoint is
//! configured (the standard `OTEL_EXPORTER_OTLP_ENDPOINT`), W3C trace context
//! taken from callers; off, and free, otherwise. Secrets never reach either:
//! every secret type redacts itself, and spans carry ids, never parameters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{ParseError, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Readable lines, for a terminal.
    Pretty,
}

/// The filter used when `RUST_LOG` is unset.
pub(crate) const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,h2=warn,tower=warn";

/// The standard variables this module reads (from the list `main` passes).
pub(crate) const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Overrides [`OTLP_ENDPOINT_ENV`] for traces.
pub(crate) const OTLP_TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The service name on every span. Default `wechat-identity`.
pub(crate) const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";
/// `true` turns traces off whatever the endpoint.
pub(crate) const SDK_DISABLED_ENV: &str = "OTEL_SDK_DISABLED";

/// Set once traces are exported: only then is trace context read from callers.
static TRACING_ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported over OTLP.
pub(crate) fn traces_enabled() -> bool {
    TRACING_ON.load(Ordering::Relaxed)
}

/// A logging setup could not be installed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TelemetryError {
    /// `RUST_LOG` does not parse.
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(String),
    /// A global subscriber was installed already.
    #[error("logging is already initialised")]
    AlreadyInitialised,
    /// The OTLP exporter could not be built.
    #[error("{OTLP_ENDPOINT_ENV}: {0}")]
    Otlp(String),
}

/// Where traces go, from the standard OpenTelemetry variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OtlpConfig {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    /// `service.name` of every span.
    pub service_name: String,
}

impl OtlpConfig {
    /// The OTLP settings in `env`, or `None` when traces are off.
    pub(crate) fn from_env(env: &[(String, String)]) -> Option<Self> {
        let get = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        if get(SDK_DISABLED_ENV).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        let endpoint = get(OTLP_TRACES_ENDPOINT_ENV).or_else(|| get(OTLP_ENDPOINT_ENV))?;
        Some(Self {
            endpoint,
            service_name: get(SERVICE_NAME_ENV).unwrap_or_else(|| "wechat-identity".into()),
        })
    }
}

/// The installed telemetry; [`Telemetry::shutdown`] flushes spans still queued.
#[derive(Debug)]
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the span exporter. Call it outside the runtime's
    /// worker threads (after `block_on` returned), with the runtime still alive.
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("wechat-identity: traces not flushed: {error}");
        }
    }
}

/// Installs the global subscriber: `filter` is `RUST_LOG`'s value, if set;
/// with `otlp`, spans of this service's crates are exported too. Must run
/// inside the Tokio runtime, which the exporter uses.
///
/// # Errors
/// A filter that does not parse, an unusable OTLP endpoint, or a second
/// initialisation.
pub(crate) fn init(
    format: LogFormat,
    filter: Option<&str>,
    otlp: Option<&OtlpConfig>,
) -> Result<Telemetry, TelemetryError> {
    let filter: Targets = filter
        .unwrap_or(DEFAULT_FILTER)
        .parse()
        .map_err(|e: ParseError| TelemetryError::Filter(e.to_string()))?;
    let provider = otlp.map(tracer_provider).transpose()?;
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("wechat-identity"))
            // Our own spans only: the transport's would trace the exporter itself.
            .with_filter(tracing_subscriber::filter::filter_fn(exported))
    });
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(traces)
        .with(logs.with_filter(filter))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        TRACING_ON.store(true, Ordering::Relaxed);
    }
    Ok(Telemetry { provider })
}

fn tracer_provider(otlp: &OtlpConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(otlp.endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
    let exporter = OnRuntime {
        inner: std::sync::Arc::new(exporter),
        runtime: tokio::runtime::Handle::current(),
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(otlp.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.instance.id",
                    uuid::Uuid::now_v7().to_string(),
                ))
                .build(),
        )
        .build())
}

/// The OTLP exporter run on the service's Tokio runtime: the SDK's batch
/// processor exports from a thread of its own, where tonic finds no reactor.
#[derive(Debug)]
struct OnRuntime {
    inner: std::sync::Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        let inner = self.inner.clone();
        match self
            .runtime
            .spawn(async move { inner.export(batch).await })
            .await
        {
            Ok(result) => result,
            Err(error) => Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                error.to_string(),
            )),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        if let Some(inner) = std::sync::Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// Reads W3C trace context (`traceparent`, `tracestate`) from a caller's
/// headers or gRPC metadata, when traces are on.
pub(crate) fn parent_context(
    get: impl Fn(&str) -> Option<String>,
) -> Option<opentelemetry::Context> {
    if !traces_enabled() {
        return None;
    }
    /// The two W3C headers, read once.
    struct W3cHeaders {
        traceparent: Option<String>,
        tracestate: Option<String>,
    }
    impl opentelemetry::propagation::Extractor for W3cHeaders {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                "traceparent" => self.traceparent.as_deref(),
                "tracestate" => self.tracestate.as_deref(),
                _ => None,
            }
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent", "tracestate"]
        }
    }
    let headers = W3cHeaders {
        traceparent: get("traceparent"),
        tracestate: get("tracestate"),
    };
    Some(opentelemetry::global::get_text_map_propagator(
        |propagator| propagator.extract(&headers),
    ))
}

/// Makes `span` a child of the caller's trace, if the caller sent one, and
/// records its `trace_id` field (for the log lines) when traces are on.
pub(crate) fn adopt_parent(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some(parent) = parent_context(get) else {
        return;
    };
    let _ = span.set_parent(parent);
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
}

/// What the trace exporter takes: this service's own spans and events at
/// INFO and above (the transport's would trace the exporter itself), and
/// storage's database spans, which are at DEBUG so that they cost nothing
/// when traces are off (its DEBUG events stay out: they may quote a
/// database's error text).
fn exported(metadata: &tracing::Metadata<'_>) -> bool {
    let within = |krate: &str| {
        metadata
            .target()
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    };
    let ours = ["server", "wechat_identity", "wechat_client", "storage"]
        .into_iter()
        .any(within);
    ours && (*metadata.level() <= tracing::Level::INFO
        || (metadata.is_span() && within("storage") && *metadata.level() <= tracing::Level::DEBUG))
}

/// The current span's trace id (32 hex digits), when traces are exported and
/// the trace is sampled.
pub(crate) fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !traces_enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| span_context.trace_id().to_string())
}

/// The gRPC service every RPC span names: `rpc.service`, and the first part
/// of the span's name.
pub(crate) const GRPC_SERVICE: &str = "wechat.identity.v1.IdentityService";

/// Marks an RPC's span as OpenTelemetry's conventions have it: kind SERVER,
/// named `wechat.identity.v1.IdentityService/<Method>`, with `rpc.system`,
/// `rpc.service` and `rpc.method`. The span must declare the `otel.name` and
/// `otel.kind` fields (empty). Nothing happens when traces are off.
pub(crate) fn mark_grpc_span(span: &tracing::Span, method: &'static str) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !traces_enabled() {
        return;
    }
    span.record("otel.name", format!("{GRPC_SERVICE}/{method}").as_str());
    span.record("otel.kind", "server");
    span.set_attribute("rpc.system", "grpc");
    span.set_attribute("rpc.service", GRPC_SERVICE);
    span.set_attribute("rpc.method", method);
}

/// Records an RPC's answer on its span: `rpc.grpc.status_code`, the error
/// table's reason as `error.type` (the code's name when it has none), and
/// status ERROR for the codes the conventions count as server errors.
pub(crate) fn answer_grpc_span(
    span: &tracing::Span,
    code: tonic::Code,
    reason: Option<&'static str>,
) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !traces_enabled() {
        return;
    }
    span.set_attribute("rpc.grpc.status_code", i64::from(i32::from(code)));
    if code == tonic::Code::Ok {
        return;
    }
    let error_type = reason.unwrap_or_else(|| grpc_code_name(code));
    span.set_attribute("error.type", error_type);
    if is_grpc_server_error(code) {
        span.set_status(opentelemetry::trace::Status::error(error_type));
    }
}

/// The codes OpenTelemetry's gRPC conventions mark as a server span's error;
/// the others are the caller's (UNSET).
fn is_grpc_server_error(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// A code's name as gRPC spells it (`DEADLINE_EXCEEDED`).
fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Marks a shim request's span as OpenTelemetry's HTTP server conventions
/// have it: kind SERVER, named `<METHOD> <route>`, with
/// `http.request.method` and `http.route`. The span must declare `otel.name`
/// and `otel.kind` (empty). Nothing happens when traces are off.
pub(crate) fn mark_http_span(span: &tracing::Span, method: &str, route: &str) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !traces_enabled() {
        return;
    }
    span.record("otel.name", format!("{method} {route}").as_str());
    span.record("otel.kind", "server");
    span.set_attribute("http.request.method", method.to_owned());
    span.set_attribute("http.route", route.to_owned());
}

/// Records a shim answer on its span: `http.response.status_code`, and
/// status ERROR (with `error.type` the status) for a 5xx.
pub(crate) fn answer_http_span(span: &tracing::Span, status: u16) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !traces_enabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.set_attribute("error.type", status.to_string());
        span.set_status(opentelemetry::trace::Status::error(status.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_that_does_not_parse_is_refused_before_anything_is_installed() {
        let error = init(LogFormat::Json, Some("info,sqlx=loud"), None).expect_err("bad filter");
        assert!(matches!(error, TelemetryError::Filter(_)));
        assert!(DEFAULT_FILTER.parse::<Targets>().is_ok());
    }

    #[test]
    fn traces_are_on_only_with_an_endpoint_and_not_disabled() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(OtlpConfig::from_env(&env(&[])), None);
        assert_eq!(
            OtlpConfig::from_env(&env(&[(OTLP_ENDPOINT_ENV, " ")])),
            None
        );
        let on = OtlpConfig::from_env(&env(&[(OTLP_ENDPOINT_ENV, "http://c:4317")])).expect("on");
        assert_eq!(
            (on.endpoint.as_str(), on.service_name.as_str()),
            ("http://c:4317", "wechat-identity")
        );
        let traces = OtlpConfig::from_env(&env(&[
            (OTLP_ENDPOINT_ENV, "http://c:4317"),
            (OTLP_TRACES_ENDPOINT_ENV, "http://t:4317"),
            (SERVICE_NAME_ENV, "identity-eu"),
        ]))
        .expect("on");
        assert_eq!(
            (traces.endpoint.as_str(), traces.service_name.as_str()),
            ("http://t:4317", "identity-eu")
        );
        assert_eq!(
            OtlpConfig::from_env(&env(&[
                (OTLP_ENDPOINT_ENV, "http://c:4317"),
                (SDK_DISABLED_ENV, "true")
            ])),
            None
        );
    }
}
