using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;

namespace Mtp.Cli;

/// <summary>
/// The console logger's line format: "mtp: MESSAGE" ("mtp: warning: MESSAGE" for warnings), no category, level tag,
/// colour or timestamp, so a log line reads like every other line of the tool; an exception (with --verbose) follows
/// in full.
/// </summary>
public sealed class CliLogFormatter() : ConsoleFormatter(FormatterName)
{
    /// <summary>The name the console logger is configured with.</summary>
    public const string FormatterName = "mtp";

    /// <inheritdoc/>
    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        string? message = logEntry.Formatter?.Invoke(logEntry.State, logEntry.Exception);
        if (message is null && logEntry.Exception is null) return;
        textWriter.Write("mtp: ");
        if (logEntry.LogLevel == LogLevel.Warning) textWriter.Write("warning: ");
        textWriter.Write(message);
        textWriter.Write('\n');
        if (logEntry.Exception is not null) textWriter.Write(logEntry.Exception.ToString() + "\n");
    }
}
