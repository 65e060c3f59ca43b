using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.Model;
using Mtp.SafeTensors;

namespace Mtp.Cli;

/// <summary>A failure a command reports as one line with an exit code (no stack trace).</summary>
public sealed class CliException(int exitCode, string message, string? file = null, string? tensor = null) : Exception(message)
{
    /// <summary>Process exit code (see <see cref="ExitCodes"/>).</summary>
    public int ExitCode { get; } = exitCode;
    /// <summary>File concerned, if any.</summary>
    public string? File { get; } = file;
    /// <summary>Tensor concerned, if any.</summary>
    public string? Tensor { get; } = tensor;
}

/// <summary>
/// Runs a command body and turns every failure into one line on stderr (or a JSON error object)
/// with a documented exit code; the stack trace only appears with --verbose.
/// </summary>
public static class CommandRunner
{
    /// <summary>Runs <paramref name="body"/>, mapping exceptions to exit codes.</summary>
    public static int Run(Func<int> body, bool verbose, bool json)
    {
        var output = CliOutput.Current;
        bool wasJson = output.Json;
        output.Json = json;
        try
        {
            return body();
        }
        catch (OperationCanceledException e) when (Interrupt.Requested)
        {
            return Interrupt.Report(e);
        }
        catch (Exception e)
        {
            var (code, file, tensor) = Classify(e);
            if (file == null || tensor == null) (file, tensor) = FromMessage(e.Message, file, tensor);
            Report(e, code, file, tensor, verbose, json);
            return code;
        }
        finally { output.Json = wasJson; }
    }

    /// <summary>Exit code, file and tensor for an exception, by its type; an exception of no known type is a bug (exit 1).</summary>
    public static (int Code, string? File, string? Tensor) Classify(Exception e) => e switch
    {
        CliException c => (c.ExitCode, c.File, c.Tensor),
        SafeTensorsException s => (ErrorCategories.ExitCode(s.Error), s.File, s.Tensor),
        AdapterException a => (ErrorCategories.ExitCode(a.Kind), a.File ?? (a.InnerException as SafeTensorsException)?.File, a.Tensor ?? (a.InnerException as SafeTensorsException)?.Tensor),
        OutputException o => (ErrorCategories.ExitCode(o.Kind), o.File, null),
        ModelLoadException => (ExitCodes.Inconsistent, null, null),
        ModelConfigException => (ExitCodes.Malformed, null, null),
        InvalidDataException => (ExitCodes.Malformed, null, null),
        FileNotFoundException f => (ExitCodes.Usage, f.FileName, null),
        DirectoryNotFoundException => (ExitCodes.Usage, null, null),
        UnauthorizedAccessException => (ExitCodes.Io, null, null),
        IOException => (ExitCodes.Io, null, null),
        AggregateException a when a.InnerExceptions.Count == 1 => Classify(a.InnerExceptions[0]),
        _ => (ExitCodes.Internal, null, null),
    };

    static readonly System.Text.RegularExpressions.Regex TensorInMessage = new(@"tensor '([^']+)'");

    /// <summary>
    /// File and tensor named by a one-line message ("PATH: ... tensor 'NAME' ..."), keeping those already known. A path
    /// that no longer exists counts when its folder does: a failed write removes its output (disk full) but the message
    /// still names it.
    /// </summary>
    public static (string? File, string? Tensor) FromMessage(string message, string? file, string? tensor)
    {
        if (file == null)
        {
            int colon = message.IndexOf(": ", StringComparison.Ordinal);
            if (colon > 0 && message[..colon] is var p && (File.Exists(p) || Directory.Exists(p) || IsRemovedPath(p))) file = p;
        }
        if (tensor == null && TensorInMessage.Match(message) is { Success: true } m) tensor = m.Groups[1].Value;
        return (file, tensor);
    }

    static bool IsRemovedPath(string p)
    {
        if (!p.Contains('/') || p.Any(char.IsWhiteSpace)) return false;
        try { return Path.GetDirectoryName(Path.GetFullPath(p)) is string parent && Directory.Exists(parent); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException) { return false; }
    }

    // The full list behind a message that shows only a few names ("... (and 51 more; --verbose lists all)").
    static IReadOnlyList<string>? NamesOf(Exception e) => e switch
    {
        AdapterException a => a.Names,
        ModelLoadException m => m.Names,
        AggregateException a when a.InnerExceptions.Count == 1 => NamesOf(a.InnerExceptions[0]),
        _ => null,
    };

    static void Report(Exception e, int code, string? file, string? tensor, bool verbose, bool json)
    {
        var names = NamesOf(e);
        string message = code == ExitCodes.Internal ? $"internal error: {e.GetType().Name}: {e.Message}" : ErrorCategories.MessageOf(e);
        message = message.Replace('\r', ' ').Replace('\n', ' ');
        if (json)
        {
            var err = new JsonObject
            {
                ["class"] = ExitCodes.ClassName(code),
                ["message"] = message,
                ["file"] = file,
                ["tensor"] = tensor,
            };
            if (names is { Count: > 0 }) err["names"] = new JsonArray(names.Select(n => (JsonNode)JsonValue.Create(n)!).ToArray());
            Console.Out.WriteLine(new JsonObject { ["error"] = err }.ToJsonString());
        }
        var output = CliOutput.Current;
        if (!verbose)
        {
            output.Error(message);
            return;
        }
        // --verbose: the full list of names, then the stack trace.
        if (names is { Count: > 0 })
        {
            output.Error(message);
            output.Error($"all {names.Count}: " + string.Join(", ", names), e);
        }
        else output.Error(message, e);
    }

    /// <summary>Indented JSON for command output.</summary>
    public static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
