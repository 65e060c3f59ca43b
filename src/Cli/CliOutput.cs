using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Mtp.Cli;

/// <summary>
/// Where a command's output goes, one instance per run (<see cref="Begin"/>): results (text, tables, the --json
/// document) on stdout, log lines and errors on stderr through the Microsoft.Extensions.Logging console logger.
/// --quiet keeps only errors (and a --json document); --json keeps only warnings and errors on stderr, so stdout is
/// one JSON document; --verbose adds stack traces (and lets debug lines through). When stdout is not a terminal nothing is wrapped.
/// </summary>
public sealed class CliOutput : IDisposable
{
    /// <summary>Console width used when stdout is not a terminal: wide enough that no table or line is wrapped.</summary>
    public const int UnwrappedWidth = 1 << 14;

    static CliOutput? _current;
    static readonly Lazy<CliOutput> Fallback = new(() => new CliOutput(quiet: false, verbose: false, previous: null));

    readonly Lazy<ILoggerFactory> _factory;
    readonly Lazy<ILogger> _log;
    readonly CliOutput? _previous;
    readonly Lazy<IAnsiConsole> _stdout;

    CliOutput(bool quiet, bool verbose, CliOutput? previous)
    {
        Quiet = quiet;
        Verbose = verbose;
        _previous = previous;
        // Made at the first line: the console logger costs a few ms to start and stop (its writer thread), which a
        // run that logs nothing (a successful --json run, a test making thousands of them) should not pay.
        _factory = new Lazy<ILoggerFactory>(() => LoggerFactory.Create(b => b
            .SetMinimumLevel(LogLevel.Trace)
            .AddFilter((_, _, level) => level >= Threshold)
            .AddConsole(o => { o.FormatterName = CliLogFormatter.FormatterName; o.LogToStandardErrorThreshold = LogLevel.Trace; })
            .AddConsoleFormatter<CliLogFormatter, ConsoleFormatterOptions>()));
        _log = new Lazy<ILogger>(() => _factory.Value.CreateLogger("mtp"));
        // Made when first used, so it writes to the Console.Out of that moment (the caller's, in tests too).
        _stdout = new Lazy<IAnsiConsole>(CreateStdout);
    }

    /// <summary>The running command's output; outside a run, one with the default settings.</summary>
    public static CliOutput Current => _current ?? Fallback.Value;

    /// <summary>Starts the output of one command run; disposing it flushes the log and restores the previous one.</summary>
    public static CliOutput Begin(bool quiet, bool verbose) => _current = new CliOutput(quiet, verbose, _current);

    /// <summary>--quiet: only errors (and a --json document).</summary>
    public bool Quiet { get; }

    /// <summary>--verbose: full error detail.</summary>
    public bool Verbose { get; }

    /// <summary>--json: stdout is one JSON document, stderr only warnings and errors. Set by <see cref="CommandRunner"/>.</summary>
    public bool Json { get; set; }

    /// <summary>The lowest level written: errors with --quiet, warnings with --json, debug with --verbose, else information.</summary>
    public LogLevel Threshold => Quiet ? LogLevel.Error : Json ? LogLevel.Warning : Verbose ? LogLevel.Debug : LogLevel.Information;

    /// <summary>The log (stderr; lines read "mtp: ...").</summary>
    public ILogger Log => _log.Value;

    /// <summary>Spectre console on stdout (for tables and the terminal progress bar); unlimited width when stdout is not a terminal.</summary>
    public IAnsiConsole Stdout => _stdout.Value;

    /// <summary>Whether progress can be drawn in place: both streams are a terminal that Spectre can drive.</summary>
    public bool InteractiveProgress => !Console.IsOutputRedirected && !Console.IsErrorRedirected && Stdout.Profile.Capabilities.Interactive;

    /// <summary>A log line of what is going on (not shown with --quiet or --json).</summary>
    public void Info(string line)
    {
        if (Threshold <= LogLevel.Information) Log.LogInformation("{Line}", line);
    }

    /// <summary>A warning (shown unless --quiet).</summary>
    public void Warn(string line)
    {
        if (Threshold <= LogLevel.Warning) Log.LogWarning("{Line}", line);
    }

    /// <summary>An error line ("mtp: MESSAGE", always shown), followed by <paramref name="detail"/> in full when given.</summary>
    public void Error(string message, Exception? detail = null) => Log.LogError(detail, "{Line}", message);

    /// <summary>A line of the command's text result on stdout (not with --quiet).</summary>
    public void Result(string line)
    {
        if (!Quiet) Console.Out.WriteLine(line);
    }

    /// <summary>A table or other rendering of the command's result on stdout (not with --quiet).</summary>
    public void Render(IRenderable what)
    {
        if (!Quiet) Stdout.Write(what);
    }

    /// <summary>The command's --json document on stdout (printed with --quiet too: it was asked for).</summary>
    public static void Document(JsonNode document) => Console.Out.WriteLine(document.ToJsonString(CommandRunner.Indented));

    static IAnsiConsole CreateStdout()
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        // Spectre wraps at 80 columns when it cannot ask a terminal; a log file or pipe gets whole lines instead.
        if (Console.IsOutputRedirected) console.Profile.Width = UnwrappedWidth;
        return console;
    }

    /// <summary>Writes out every pending log line and makes the previous output current again.</summary>
    public void Dispose()
    {
        if (_factory.IsValueCreated) _factory.Value.Dispose();
        if (ReferenceEquals(_current, this)) _current = _previous;
    }
}
