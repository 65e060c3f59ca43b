using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// TorchSharp frees a Scalar made from a number only in its finalizer and drops it while libtorch still reads it,
/// so a GC during the op corrupts it ("Unknown scalar type" in RmsNorm, issue 15 item 1). The model code must
/// hand TorchSharp only Scalars it holds (src/Model/HeldScalars.cs).
/// </summary>
public class ScalarLifetimeTests
{
    static readonly Assembly TorchSharpAssembly = typeof(Scalar).Assembly;
    static readonly Dictionary<MethodBase, bool> Memo = new();

    static bool CreatesScalar(MethodBase m) =>
        m.DeclaringType == typeof(Scalar) && (m.Name == "op_Implicit" || m.IsConstructor)
        || m.DeclaringType == typeof(ScalarExtensionMethods);

    /// <summary>Whether calling <paramref name="m"/> makes a Scalar, itself or through other TorchSharp methods.</summary>
    static bool MakesScalar(MethodBase m, int depth = 0)
    {
        if (CreatesScalar(m)) return true;
        if (m.DeclaringType?.Assembly != TorchSharpAssembly || depth > 8) return false;
        lock (Memo)
        {
            if (Memo.TryGetValue(m, out bool known)) return known;
            Memo[m] = false; // breaks recursion cycles
        }
        bool makes = IlCalls.Callees(m).Any(c => MakesScalar(c, depth + 1));
        lock (Memo) Memo[m] = makes;
        return makes;
    }

    [Test]
    public void ModelCodeAndItsTestsNeverLetTorchSharpMakeAScalar()
    {
        var holder = typeof(HeldScalars);
        var offenders = new List<string>();
        foreach (var m in IlCalls.Methods(typeof(RmsNorm).Assembly).Concat(IlCalls.Methods(typeof(ScalarLifetimeTests).Assembly)))
        {
            bool isHolder = m.DeclaringType == holder;
            foreach (var c in IlCalls.Callees(m))
            {
                if (isHolder && CreatesScalar(c)) continue; // the holder makes Scalars and disposes them after the op
                if (MakesScalar(c)) offenders.Add($"{m.DeclaringType?.FullName}.{m.Name} -> {IlCalls.Describe(c)}");
            }
        }
        Assert.That(offenders, Is.Empty, "calls that let TorchSharp make an unheld Scalar (use HeldScalars):\n" + string.Join("\n", offenders.Distinct()));
    }

    [Test]
    public void TheScanSeesTheImplicitScalarOfTensorPlusTensor()
    {
        // The scan must be able to fail: TorchSharp's own + (hidden alpha = 1) is found.
        var plus = typeof(Tensor).GetMethod("op_Addition", new[] { typeof(Tensor), typeof(Tensor) })!;
        Assert.That(MakesScalar(plus), Is.True);
        var held = typeof(Tensor).GetMethod("add", new[] { typeof(Tensor), typeof(Scalar) })!;
        Assert.That(MakesScalar(held), Is.False);
    }

    [Test]
    public void RmsNormSurvivesAGcOnAnotherThread()
    {
        // Forces collections (and so finalizers) while the norm runs; on main this failed within seconds with
        // "Unknown scalar type" or "Expected false to be true" from c10::Scalar.
        using var norm = new RmsNorm(64, 1e-6, ScalarType.Float32, CPU);
        using var x = randn(4, 64);
        bool stop = false;
        var collector = new Thread(() => { while (!Volatile.Read(ref stop)) { GC.Collect(); GC.WaitForPendingFinalizers(); } }) { IsBackground = true };
        collector.Start();
        long calls = 0;
        try
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (sw.Elapsed.TotalSeconds < 3)
            {
                using var scope = NewDisposeScope();
                for (int i = 0; i < 100; i++, calls++) norm.forward(x);
            }
        }
        finally { Volatile.Write(ref stop, true); collector.Join(); }
        TestContext.Out.WriteLine($"{calls} forwards under GC pressure");
        Assert.That(calls, Is.GreaterThan(0));
    }
}
