//! Command line: arguments -> the command run, and its exit code (0 when everything
//! went through, 1 when any input failed, 2 on a usage or configuration error).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::daemon;
use crate::input::{self, Flow, InputError, ReportSink};
use crate::metrics::Metrics;
use crate::pipeline;
use crate::report::ReportReader;
use crate::rows::{Format, RecordRows, RowWriter};
use crate::store::Store;

/// Streams DMARC aggregate reports from IMAP or files into ClickHouse.
#[derive(Debug, Parser)]
#[command(
    name = "dmarc-ingest",
    version,
    about,
    after_help = "Exit codes: 0 everything stored (or parsed); 1 some inputs failed or were \
                  quarantined, the rest was stored; 2 usage or configuration error; 3 a \
                  server (ClickHouse or IMAP) unreachable or refusing us."
)]
pub struct Cli {
    /// TOML configuration file; every key can also be set as DMARC_INGEST_<SECTION>_<KEY>.
    #[arg(long, global = true, env = "DMARC_INGEST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr (the level comes from DMARC_INGEST_LOG, default info).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DMARC_INGEST_LOG_FORMAT",
        default_value = "human"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse report files (.xml, .xml.gz, .zip, .eml, mbox, directories) and print one row
    /// per record to stdout.
    Parse {
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Files or directories (walked recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Manage the ClickHouse schema.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Import report files (the `parse` inputs, plus Maildir folders) into ClickHouse.
    /// Idempotent: a report already stored is skipped and counted as a duplicate.
    Import {
        /// Files or directories (walked recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Look up the reverse DNS names of the source addresses stored in ClickHouse that
    /// have none yet (or an expired one), into `source_names` (shown by the
    /// `records_enriched` view). Without options: sources of the last 30 days.
    Enrich {
        /// Every stored source.
        #[arg(long, conflicts_with = "since")]
        all: bool,
        /// Sources of reports that began on this day (YYYY-MM-DD) or later.
        #[arg(long)]
        since: Option<String>,
    },
    /// The inventory of domains the team answers for (`[domains] file`).
    Domains {
        #[command(subcommand)]
        action: DomainsAction,
    },
    /// Alerts on changes for the worse (see `dmarc.alerts`).
    Alerts {
        #[command(subcommand)]
        action: AlertsAction,
    },
    /// The weekly digests: per owner of the inventory, each domain's status, volumes,
    /// pass rates, top senders, new sources, open alerts and a chart of the week; mailed
    /// (`[smtp]`) to the owner's contacts and `[alerts] team_recipients` (once per owner
    /// and week: a digest mailed before is not mailed again), and/or written to a
    /// directory.
    Digest {
        /// Only this owner's digest (as written in the domains file).
        #[arg(long)]
        owner: Option<String>,
        /// The week holding this day (YYYY-MM-DD); default: the last whole week
        /// (Monday to Sunday, UTC).
        #[arg(long)]
        week: Option<String>,
        /// Write `<owner>-<week>.html` (charts embedded), `.txt` and `.csv` here, and
        /// mail nothing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// DNS checks of every inventory domain and of the busiest report domains.
    Dns {
        #[command(subcommand)]
        action: DnsAction,
    },
    /// The IMAP daemon: mailboxes into ClickHouse, processed mail moved to the archive,
    /// mail without a valid report to the invalid mailbox. SIGTERM/SIGINT stop it
    /// cleanly.
    Run {
        /// Drain the mailboxes once and exit (exit code 1 if anything failed).
        #[arg(long)]
        once: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum DomainsAction {
    /// Load the domains file into `dmarc.domains`: new and changed domains written,
    /// domains gone from the file marked removed (never deleted); then list the policy
    /// domains of stored reports that are not in it. Safe to re-run.
    Sync,
}

#[derive(Debug, Subcommand)]
pub enum AlertsAction {
    /// Evaluate the alert rules over the stored DNS snapshots, statuses and report
    /// traffic: new alerts opened, open ones kept (one per rule, domain and key), those no
    /// longer firing resolved, in `dmarc.alert_history` (current state: the
    /// `dmarc.alerts` view); then deliver what is due (`[smtp]` mail to the domain's
    /// contact and `[alerts] team_recipients`, `webhook_url`), once per alert event,
    /// failed deliveries tried again after a backoff.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum DnsAction {
    /// Read what every domain publishes (DMARC, SPF, MX, DKIM keys of the selectors seen,
    /// MTA-STS, TLS-RPT) into `dns_checks`, then judge every inventory domain red, amber
    /// or green into `domain_status`. Safe to re-run (each run is a new snapshot).
    Check,
}

#[derive(Debug, Subcommand)]
pub enum SchemaAction {
    /// Create the database and tables, or apply the migrations not applied yet.
    /// Safe to re-run.
    Apply,
    /// Bring the rollups (records_daily, reporter_daily) back in line with records and
    /// reports for the days FROM to TO (inclusive), e.g. after a failed publish whose
    /// repair was lost with the process. Safe to re-run, and beside running importers.
    RebuildRollups {
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD.
        #[arg(long)]
        to: String,
    },
}

/// Whether log lines may carry colour codes: only when stderr is a terminal and
/// `NO_COLOR` is unset or empty (<https://no-color.org>).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("DMARC_INGEST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    log_panics();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    match cli.command {
        Command::Parse { format, paths } => parse(&config, format, &paths),
        Command::Schema {
            action: SchemaAction::Apply,
        } => schema_apply(&config),
        Command::Schema {
            action: SchemaAction::RebuildRollups { from, to },
        } => rebuild_rollups(&config, &from, &to),
        Command::Import { paths } => import(&config, &paths),
        Command::Enrich { all, since } => enrich(&config, all, since),
        Command::Domains {
            action: DomainsAction::Sync,
        } => domains_sync(&config),
        Command::Dns {
            action: DnsAction::Check,
        } => dns_check(&config),
        Command::Alerts {
            action: AlertsAction::Check,
        } => alerts_check(&config),
        Command::Digest { owner, week, out } => digest(&config, owner, week, out),
        Command::Run { once } => run(&config, once),
    }
}

/// Panics go to the log as one error line (message and place), never with a symbolised
/// backtrace: symbolising one reads the binary's debug information into memory, which
/// would break the daemon's memory budget exactly when a stranger's mail trips a bug (the
/// panic is caught, the mail tried alone and quarantined, and the line says where).
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = crate::pipeline::panic_message(info.payload());
        tracing::error!(%place, panic = %message, "panicked");
    }));
}

/// `run`: the daemon (or one drain with `--once`).
fn run(config: &Config, once: bool) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; finishing the batch in flight");
            let _ = stop_tx.send(true);
        });
        let store = match connect_store(config, once, &stop_rx).await {
            Ok(Some(store)) => store,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => return fail_store(&e),
        };
        let metrics = Metrics::new();
        if !once && config.enrich.refresh_secs > 0 {
            match crate::enrich::Enricher::new(config) {
                Ok(enricher) => {
                    tokio::spawn(crate::enrich::refresh(
                        store.clone(),
                        enricher,
                        std::time::Duration::from_secs(config.enrich.refresh_secs),
                        metrics.clone(),
                        stop_rx.clone(),
                    ));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(exit::CONFIG);
                }
            }
        }
        let alerting = if once {
            None
        } else {
            match crate::alerts::run::Alerting::new(store.clone(), config, Some(metrics.clone())) {
                Ok(alerting) => Some(std::sync::Arc::new(alerting)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(exit::CONFIG);
                }
            }
        };
        if !once && config.smtp.enabled() && config.alerts.digest_hour < 24 {
            match crate::alerts::send::Outbox::from_config(config) {
                Ok(outbox) => {
                    tokio::spawn(crate::alerts::weekly::schedule(
                        store.clone(),
                        outbox,
                        config.alerts.digest_weekday,
                        config.alerts.digest_hour,
                        metrics.clone(),
                        stop_rx.clone(),
                    ));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(exit::CONFIG);
                }
            }
        }
        if let (Some(alerting), true) = (&alerting, config.alerts.check_interval > 0) {
            tokio::spawn(crate::alerts::run::schedule(
                alerting.clone(),
                std::time::Duration::from_secs(config.alerts.check_interval),
                stop_rx.clone(),
            ));
        }
        if !once && config.dns.check_interval > 0 {
            match crate::resolver::Resolver::new(&config.dns) {
                Ok(resolver) => {
                    tokio::spawn(crate::dnscheck::run::schedule(
                        store.clone(),
                        resolver,
                        crate::dnscheck::run::RunSettings::from_config(config),
                        std::time::Duration::from_secs(config.dns.check_interval),
                        alerting.clone(),
                        stop_rx.clone(),
                    ));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(exit::CONFIG);
                }
            }
        }
        if !once && !config.metrics.listen.is_empty() {
            match tokio::net::TcpListener::bind(&config.metrics.listen).await {
                Ok(listener) => {
                    let mut rx = stop_rx.clone();
                    tokio::spawn(crate::metrics::serve(
                        listener,
                        metrics.clone(),
                        async move {
                            let _ = rx.wait_for(|stop| *stop).await;
                        },
                    ));
                    tracing::info!(listen = %config.metrics.listen, "metrics endpoint up");
                }
                Err(e) => {
                    eprintln!("error: cannot listen on {}: {e}", config.metrics.listen);
                    return ExitCode::from(exit::CONFIG);
                }
            }
        }
        let accepted = match accepted_domains(config, &store).await {
            Ok(accepted) => accepted,
            Err(code) => return code,
        };
        let summary = daemon::run(config, store, once, accepted, metrics.clone(), stop_rx).await;
        if once {
            eprint!("{summary}");
            if summary.servers_failed > 0 {
                return ExitCode::from(exit::SERVER);
            }
            if daemon::any_failed(&summary, &metrics) {
                return ExitCode::from(exit::INPUTS_FAILED);
            }
        } else {
            tracing::info!(%summary, "stopped");
        }
        ExitCode::SUCCESS
    })
}

/// Connects to ClickHouse and checks the schema. The daemon keeps trying while the
/// server is down (`None` when shutdown comes first); `--once` gives up after the
/// configured attempts.
async fn connect_store(
    config: &Config,
    once: bool,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Store>, crate::store::StoreError> {
    let mut attempt = 0;
    loop {
        let connected = async {
            let store = Store::connect(&config.clickhouse).await?;
            store.check_schema().await?;
            if let Err(e) = store.drop_stale_staging().await {
                tracing::warn!(error = %e, "cannot drop stale staging partitions");
            }
            Ok::<_, crate::store::StoreError>(store)
        }
        .await;
        match connected {
            Ok(store) => return Ok(Some(store)),
            Err(e) if once || !e.is_transient() => return Err(e),
            Err(e) => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "ClickHouse not reachable; waiting");
                let delay = crate::store::backoff(attempt, 1_000, 60_000);
                let mut rx = stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = rx.wait_for(|s| *s) => return Ok(None),
                }
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Exit codes, one meaning each (README "Exit codes", and `--help`).
pub mod exit {
    /// Everything asked for was done.
    pub const OK: u8 = 0;
    /// Some inputs failed or were quarantined (the rest was stored).
    pub const INPUTS_FAILED: u8 = 1;
    /// Usage or configuration error (nothing was done).
    pub const CONFIG: u8 = 2;
    /// A server (ClickHouse or IMAP) was unreachable or refused us.
    pub const SERVER: u8 = 3;
}

/// The exit code for a store error that stopped a command.
fn store_exit(e: &crate::store::StoreError) -> u8 {
    use crate::store::StoreError as E;
    match e {
        E::Unreachable { .. } | E::Tls { .. } | E::Unavailable(_) | E::MemoryLimit(_) => {
            exit::SERVER
        }
        // The database is not set up: `schema apply` first.
        E::Schema(_) => exit::CONFIG,
        E::Rejected(_) | E::BadReport(_) => exit::INPUTS_FAILED,
    }
}

/// Prints a store error that stopped a command; its exit code.
fn fail_store(e: &crate::store::StoreError) -> ExitCode {
    fail(e);
    ExitCode::from(store_exit(e))
}

/// Prints an error with its whole chain (each part once) and gives exit code 1.
fn fail(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {}", crate::store::errors::error_chain(e));
    ExitCode::from(exit::INPUTS_FAILED)
}

/// `schema apply`: migrations, then a report of what was applied.
fn schema_apply(config: &Config) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let result = rt.block_on(async {
        let store = Store::connect(&config.clickhouse).await?;
        let applied = store.apply_schema().await?;
        let dropped = store.drop_stale_staging().await?;
        Ok::<_, crate::store::StoreError>((store.database().to_owned(), applied, dropped))
    });
    match result {
        Ok((db, applied, dropped)) => {
            if applied.is_empty() {
                eprintln!("schema: database {db} is up to date");
            } else {
                eprintln!("schema: applied {} to database {db}", applied.join(", "));
            }
            if dropped > 0 {
                eprintln!("schema: dropped {dropped} stale staging partitions");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail_store(&e),
    }
}

/// Unregistered domains named in the summary of `domains sync`.
const UNREGISTERED_SHOWN: usize = 20;

/// `domains sync`: the domains file into `dmarc.domains`, a summary, and the policy
/// domains of stored reports that are not in the inventory.
fn domains_sync(config: &Config) -> ExitCode {
    let Some(path) = &config.domains.file else {
        eprintln!("error: domains sync: no domains file ([domains] file)");
        return ExitCode::from(exit::CONFIG);
    };
    let what = format!("domains file {}", path.display());
    let listed = match std::fs::read_to_string(path)
        .map_err(|e| format!("{what}: {e}"))
        .and_then(|text| crate::inventory::parse(&text, &what))
    {
        Ok(listed) => listed,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let result = rt.block_on(async {
        let store = Store::connect(&config.clickhouse).await?;
        store.check_schema().await?;
        let stored = store.inventory().await?;
        let rows = crate::inventory::changes(&stored, &listed, crate::store::now());
        store.insert_rows("domain_inventory", &rows).await?;
        let unregistered = store.unregistered_domains().await?;
        Ok::<_, crate::store::StoreError>((rows, unregistered))
    });
    match result {
        Ok((rows, unregistered)) => {
            let removed = rows.iter().filter(|r| r.removed == 1).count();
            eprintln!(
                "domains sync: {} domains in {what}; {} new or changed, {removed} marked removed",
                listed.len(),
                rows.len() - removed
            );
            if !unregistered.is_empty() {
                let shown: Vec<String> = unregistered
                    .iter()
                    .take(UNREGISTERED_SHOWN)
                    .map(|d| format!("{} ({} reports)", d.domain, d.reports))
                    .collect();
                let more = unregistered.len().saturating_sub(UNREGISTERED_SHOWN);
                eprintln!(
                    "domains sync: {} domains of stored reports are not in the inventory (dmarc.unregistered_domains): {}{}",
                    unregistered.len(),
                    shown.join(", "),
                    if more > 0 { format!(", and {more} more") } else { String::new() }
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail_store(&e),
    }
}

/// Under `[domains] accept = "inventory"`, the domains reports are taken for (`None`:
/// every domain). An empty inventory is a configuration error (exit 2): it would refuse
/// every report; an unreachable ClickHouse exits 3.
async fn accepted_domains(
    config: &Config,
    store: &Store,
) -> Result<Option<crate::inventory::Accepted>, ExitCode> {
    if config.domains.accept != crate::config::Accept::Inventory {
        return Ok(None);
    }
    match store.listed_domains().await {
        Ok(domains) if domains.is_empty() => {
            eprintln!(
                "error: domains.accept = \"inventory\" but the inventory is empty: run `dmarc-ingest domains sync` first"
            );
            Err(ExitCode::from(exit::CONFIG))
        }
        Ok(domains) => {
            let accepted = crate::inventory::Accepted::new(domains);
            tracing::info!(
                domains = accepted.len(),
                "taking reports for the inventory's domains only"
            );
            Ok(Some(accepted))
        }
        Err(e) => Err(fail_store(&e)),
    }
}

/// `digest`: the weekly digests, mailed or written.
fn digest(
    config: &Config,
    owner: Option<String>,
    week: Option<String>,
    out: Option<PathBuf>,
) -> ExitCode {
    use crate::alerts::weekly;
    let today = (crate::store::now() / 86_400) as u16;
    let week_start = match week.as_deref().map(weekly::parse_day) {
        None => weekly::previous_week(today),
        Some(Some(day)) => weekly::week_start_of(day),
        Some(None) => {
            eprintln!(
                "error: --week {:?} is not a date (YYYY-MM-DD)",
                week.unwrap_or_default()
            );
            return ExitCode::from(exit::CONFIG);
        }
    };
    if out.is_none() && !config.smtp.enabled() {
        eprintln!("error: nothing to do: set [smtp] host to mail the digests, or give --out DIR");
        return ExitCode::from(exit::CONFIG);
    }
    let outbox = match crate::alerts::send::Outbox::from_config(config) {
        Ok(outbox) => outbox,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let options = weekly::DigestOptions {
        owner,
        week_start,
        send: out.is_none(),
        out_dir: out,
    };
    let result = rt.block_on(async {
        let store = Store::connect(&config.clickhouse).await?;
        store.check_schema().await?;
        Ok::<_, crate::store::StoreError>(
            weekly::run(&store, &outbox, &options, crate::store::now()).await,
        )
    });
    match result {
        Ok(Ok(summary)) => {
            eprintln!("digest {}: {summary}", crate::alerts::day_text(week_start));
            if summary.failed > 0 {
                ExitCode::from(exit::INPUTS_FAILED)
            } else {
                ExitCode::SUCCESS
            }
        }
        Ok(Err(weekly::DigestError::Store(e))) | Err(e) => fail_store(&e),
        Ok(Err(e @ weekly::DigestError::UnknownOwner(_))) => {
            eprintln!("error: {e}");
            ExitCode::from(exit::CONFIG)
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(exit::INPUTS_FAILED)
        }
    }
}

/// `alerts check`: one evaluation of the alert rules (see [`crate::alerts`]).
fn alerts_check(config: &Config) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let result = rt.block_on(async {
        let store = Store::connect(&config.clickhouse).await?;
        store.check_schema().await?;
        let alerting = match crate::alerts::run::Alerting::new(store, config, None) {
            Ok(alerting) => alerting,
            Err(e) => return Ok(Err(e)),
        };
        alerting
            .evaluate_and_deliver(crate::store::now())
            .await
            .map(Ok)
    });
    match result {
        Ok(Ok((evaluated, delivered))) => {
            eprintln!("alerts check: {evaluated}; {delivered}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(exit::CONFIG)
        }
        Err(e) => fail_store(&e),
    }
}

/// `dns check`: one DNS check run (see [`crate::dnscheck::run`]).
fn dns_check(config: &Config) -> ExitCode {
    let resolver = match crate::resolver::Resolver::new(&config.dns) {
        Ok(resolver) => resolver,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let settings = crate::dnscheck::run::RunSettings::from_config(config);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let result = rt.block_on(async {
        let store = Store::connect(&config.clickhouse).await?;
        store.check_schema().await?;
        crate::dnscheck::run::check_and_judge(&store, &resolver, &settings).await
    });
    match result {
        Ok(summary) => {
            eprintln!("dns check: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => fail_store(&e),
    }
}

/// `schema rebuild-rollups`: repairs the rollups of a range of days.
fn rebuild_rollups(config: &Config, from: &str, to: &str) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let result = rt.block_on(async {
        let store = Store::connect(&config.clickhouse).await?;
        store.check_schema().await?;
        store.rebuild_rollups(from, to).await
    });
    match result {
        Ok(()) => {
            eprintln!("schema: rollups of {from} to {to} match records and reports");
            ExitCode::SUCCESS
        }
        Err(e) => fail_store(&e),
    }
}

/// Sources looked at by `enrich` without `--all` or `--since`.
const ENRICH_RECENT_DAYS: u32 = 30;

/// `enrich`: reverse names of stored sources, a progress bar on a terminal, a summary.
/// Exit 3 when every lookup failed (the resolver is unreachable).
fn enrich(config: &Config, all: bool, since: Option<String>) -> ExitCode {
    use crate::store::sources::Since;
    use std::io::IsTerminal;
    let since = match (all, since) {
        (true, _) => Since::All,
        (false, Some(day)) => Since::Day(day),
        (false, None) => Since::RecentDays(ENRICH_RECENT_DAYS),
    };
    let enricher = match crate::enrich::Enricher::new(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let bar = indicatif::ProgressBar::hidden();
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    let progress = |step: crate::enrich::Progress| match step {
        crate::enrich::Progress::More(n) => bar.inc_length(n),
        crate::enrich::Progress::Done => bar.inc(1),
    };
    let result = rt.block_on(async {
        let store = Store::connect(&config.clickhouse).await?;
        store.check_schema().await?;
        crate::enrich::enrich_stored(
            &store,
            &enricher,
            &since,
            None,
            crate::enrich::PAGE,
            &progress,
        )
        .await
    });
    bar.finish_and_clear();
    match result {
        Ok(summary) => {
            eprintln!("{summary}");
            if summary.failed > 0 && summary.failed == summary.pending {
                ExitCode::from(exit::SERVER)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(crate::store::StoreError::BadReport(reason)) => {
            eprintln!("error: --since: {reason}");
            ExitCode::from(exit::CONFIG)
        }
        Err(e) => fail_store(&e),
    }
}

/// `import`: files into ClickHouse, a progress bar on a terminal, a summary at the end.
fn import(config: &Config, paths: &[PathBuf]) -> ExitCode {
    use std::io::IsTerminal;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let store = match rt.block_on(async {
        let store = Store::connect(&config.clickhouse).await?;
        store.check_schema().await?;
        Ok::<_, crate::store::StoreError>(store)
    }) {
        Ok(s) => s,
        Err(e) => return fail_store(&e),
    };
    let accepted = match rt.block_on(accepted_domains(config, &store)) {
        Ok(accepted) => accepted.map(std::sync::Arc::new),
        Err(code) => return code,
    };
    let progress = std::io::stderr().is_terminal();
    let summary = pipeline::import_paths(
        rt.handle(),
        &store,
        paths,
        &config.limits,
        accepted,
        progress,
    );
    eprint!("{summary}");
    if summary.stopped.is_some() {
        ExitCode::from(exit::SERVER)
    } else if summary.failed() {
        ExitCode::from(exit::INPUTS_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// `parse`: rows to stdout, one error line per failed input on stderr.
fn parse(config: &Config, format: Format, paths: &[PathBuf]) -> ExitCode {
    let stdout = std::io::stdout().lock();
    let mut sink = PrintRows {
        rows: RowWriter::new(format, Vec::with_capacity(REPORT_BUFFER)),
        out: std::io::BufWriter::with_capacity(1 << 16, stdout),
        failures: 0,
        closed: false,
        streamed: 0,
    };
    for item in input::list_files(paths) {
        let flow = match item {
            Ok(file) => {
                // A panic in a stage fails this file only (its rows held back are dropped).
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    input::read_one_file(&file, &config.limits, &mut sink)
                }));
                caught.unwrap_or_else(|payload| {
                    sink.rows.get_mut().clear();
                    let message = crate::pipeline::panic_message(payload.as_ref());
                    input::ReportSink::failure(
                        &mut sink,
                        &file.display().to_string(),
                        &InputError::Sink {
                            message: format!("a processing stage panicked: {message}"),
                            kind: crate::failure::FailureKind::Panic,
                        },
                    )
                })
            }
            Err((shown, e)) => input::ReportSink::failure(&mut sink, &shown, &InputError::Io(e)),
        };
        if flow == input::Flow::Stop {
            break;
        }
    }
    if sink.out.flush().is_err() {
        sink.closed = true;
    }
    // A closed stdout (a pipe into `head`) is not an input failure.
    if sink.failures > 0 {
        ExitCode::from(exit::INPUTS_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Rows of one report are held back up to this many bytes, so that a report that turns
/// out broken prints no rows; past it they stream (bounded memory), and the error line
/// says how many were printed.
const REPORT_BUFFER: usize = 4 << 20;

/// Prints rows; counts failures and prints each on stderr.
struct PrintRows<W: Write> {
    rows: RowWriter<Vec<u8>>,
    out: W,
    failures: u64,
    closed: bool,
    /// Rows of the current report already written out (past the buffer).
    streamed: u64,
}

impl<W: Write> PrintRows<W> {
    fn drain(&mut self) -> Result<(), InputError> {
        let buffered = self.rows.get_mut();
        let result = self.out.write_all(buffered);
        buffered.clear();
        result.map_err(|e| {
            self.closed = true;
            InputError::Sink {
                message: format!("cannot write output: {e}"),
                kind: crate::failure::FailureKind::Output,
            }
        })
    }

    fn write_report(
        &mut self,
        source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<(), InputError> {
        self.streamed = 0;
        crate::pipeline::test_fault(&reader.header().report_id);
        let mut rows = RecordRows::new(source);
        while let Some(record) = reader.next_record()? {
            let row = rows.row(reader.header(), record)?;
            self.rows.write(&row).map_err(|e| InputError::Sink {
                message: format!("cannot format row: {e}"),
                kind: crate::failure::FailureKind::Output,
            })?;
            if self.rows.get_mut().len() >= REPORT_BUFFER {
                self.drain()?;
                self.streamed = reader.records_read();
            }
        }
        self.drain()
    }
}

impl<W: Write> ReportSink for PrintRows<W> {
    fn report(
        &mut self,
        source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<Flow, InputError> {
        match self.write_report(source, reader) {
            Ok(()) => Ok(Flow::Continue),
            Err(_) if self.closed => Ok(Flow::Stop),
            Err(e) => {
                self.rows.get_mut().clear();
                if self.streamed > 0 {
                    eprintln!(
                        "note: {source}: {} rows of this report were printed before it failed",
                        self.streamed
                    );
                }
                Err(e)
            }
        }
    }

    fn failure(&mut self, source: &str, error: &InputError) -> Flow {
        self.failures += 1;
        eprintln!(
            "error: {source}: {}",
            crate::failure::truncate_reason(&error.to_string())
        );
        if self.closed {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}
