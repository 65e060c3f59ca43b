using System.Diagnostics;
using System.Globalization;

namespace Mtp.Cli;

/// <summary>
/// Progress for a log that is not a terminal (CI, a pipe, a file): one line every <see cref="Interval"/> with bytes done,
/// percent, rate, elapsed time and ETA, e.g. "converting: 1.20 GB / 5.00 GB (24%), 300 MB/s, elapsed 0:00:04, ETA 0:00:12".
/// A run shorter than the interval prints none; the command's summary line follows either way.
/// </summary>
public sealed class TimedProgress
{
    /// <summary>Seconds between lines unless <c>MTP_PROGRESS_SECONDS</c> says otherwise.</summary>
    public const double DefaultSeconds = 10;

    readonly string _what;
    readonly Action<string> _write;
    readonly Func<TimeSpan> _clock;
    readonly object _gate = new();
    long _total, _done;
    TimeSpan _last;

    /// <summary>A reporter writing its lines to <paramref name="write"/>; <paramref name="clock"/> (elapsed time) is injectable for tests.</summary>
    public TimedProgress(string what, Action<string> write, TimeSpan? interval = null, Func<TimeSpan>? clock = null)
    {
        _what = what;
        _write = write;
        Interval = interval ?? ConfiguredInterval();
        if (clock is null)
        {
            var sw = Stopwatch.StartNew();
            clock = () => sw.Elapsed;
        }
        _clock = clock;
        _last = _clock();
    }

    /// <summary>Time between two lines.</summary>
    public TimeSpan Interval { get; }

    /// <summary>The interval from <c>MTP_PROGRESS_SECONDS</c> (a number of seconds, 0 for a line per update), else 10 s.</summary>
    public static TimeSpan ConfiguredInterval() =>
        double.TryParse(Environment.GetEnvironmentVariable("MTP_PROGRESS_SECONDS"), NumberStyles.Float, CultureInfo.InvariantCulture, out double s) && s >= 0 && double.IsFinite(s)
            ? TimeSpan.FromSeconds(s) : TimeSpan.FromSeconds(DefaultSeconds);

    /// <summary>Sets the total bytes of the work.</summary>
    public void Start(long total)
    {
        lock (_gate) _total = total;
    }

    /// <summary>Adds <paramref name="bytes"/> done; writes a line when the interval has passed.</summary>
    public void Advance(long bytes)
    {
        lock (_gate) At(_done + bytes, _total);
    }

    /// <summary>Sets the bytes done to <paramref name="done"/> of <paramref name="total"/>; writes a line when the interval has passed.</summary>
    public void Report(long done, long total)
    {
        lock (_gate) At(done, total);
    }

    void At(long done, long total)
    {
        _done = done;
        _total = total;
        TimeSpan now = _clock();
        if (now - _last < Interval) return;
        _last = now;
        _write(Line(_what, done, total, now));
    }

    /// <summary>The progress line for <paramref name="done"/> of <paramref name="total"/> bytes after <paramref name="elapsed"/>.</summary>
    public static string Line(string what, long done, long total, TimeSpan elapsed)
    {
        double seconds = elapsed.TotalSeconds;
        double rate = seconds > 0 ? done / seconds : 0;
        string eta = rate > 0 && total >= done ? Clock(TimeSpan.FromSeconds((total - done) / rate)) : "unknown";
        long percent = total > 0 ? Math.Min(100, done * 100 / total) : 100;
        return string.Create(CultureInfo.InvariantCulture,
            $"{what}: {Units.Bytes(done)} / {Units.Bytes(total)} ({percent}%), {rate / 1e6:0} MB/s, elapsed {Clock(elapsed)}, ETA {eta}");
    }

    /// <summary>"0:00:07", "12:34:56": hours, minutes and seconds.</summary>
    public static string Clock(TimeSpan t) => string.Create(CultureInfo.InvariantCulture, $"{(long)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}");
}
