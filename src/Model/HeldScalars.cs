using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// Numbers handed to TorchSharp, kept alive until the native op has returned.
/// </summary>
/// <remarks>
/// TorchSharp 0.107 turns every number passed to an op (and the hidden alpha of <c>Tensor + Tensor</c>,
/// <c>add(Tensor)</c>, <c>add_(Scalar)</c>, <c>softplus</c>, <c>arange(stop)</c>) into a native
/// <see cref="Scalar"/> that only a finalizer frees, and drops its last reference as soon as the handle is
/// read. A GC during the op (any thread may start one) then lets the finalizer thread free the c10::Scalar
/// while libtorch is still reading it: "Unknown scalar type", or a wrong value, now and then. The model code
/// therefore never lets TorchSharp make a Scalar: constants live in static fields (never collected), other
/// numbers are created here and disposed after the op. ScalarLifetimeTests scans the model and its tests for
/// any call that would still create one.
/// </remarks>
internal static class HeldScalars
{
    static readonly Scalar One = 1.ToScalar();
    static readonly Scalar Zero = 0.ToScalar();
    static readonly Scalar Two = 2.ToScalar();
    static readonly Scalar NegativeInfinity = double.NegativeInfinity.ToScalar();
    static readonly Scalar SoftplusThreshold = 20.0.ToScalar();

    /// <summary>a + b.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary>a + v.</summary>
    public static Tensor Plus(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.add(s, One);
    }

    /// <summary>a + v (an integer: integer tensors stay integer).</summary>
    public static Tensor Plus(this Tensor a, long v)
    {
        using var s = v.ToScalar();
        return a.add(s, One);
    }

    /// <summary>a - v.</summary>
    public static Tensor Minus(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.sub(s);
    }

    /// <summary>a * v.</summary>
    public static Tensor Times(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.mul(s);
    }

    /// <summary>a * v (an integer: integer tensors stay integer).</summary>
    public static Tensor Times(this Tensor a, long v)
    {
        using var s = v.ToScalar();
        return a.mul(s);
    }

    /// <summary>a / v.</summary>
    public static Tensor DividedBy(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.div(s);
    }

    /// <summary>floor(a / v) (integer division of ids and positions).</summary>
    public static Tensor FloorDividedBy(this Tensor a, long v)
    {
        using var s = v.ToScalar();
        return a.div(s, RoundingMode.floor);
    }

    /// <summary>a^2 (the integer exponent 2, as <c>pow(2)</c>).</summary>
    public static Tensor Squared(this Tensor a) => a.pow(Two);

    /// <summary>a with <paramref name="source"/>'s rows added at <paramref name="index"/> along <paramref name="dim"/>.</summary>
    public static Tensor IndexAdd(this Tensor a, long dim, Tensor index, Tensor source) => a.index_add(dim, index, source, One);

    /// <summary>a with v where <paramref name="mask"/> is true.</summary>
    public static Tensor FillWhere(this Tensor a, Tensor mask, double v)
    {
        if (double.IsNegativeInfinity(v)) return a.masked_fill(mask, NegativeInfinity);
        using var s = v.ToScalar();
        return a.masked_fill(mask, s);
    }

    /// <summary>max(a, v).</summary>
    public static Tensor AtLeast(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.clamp_min(s);
    }

    /// <summary>min(a, v).</summary>
    public static Tensor AtMost(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.clamp_max(s);
    }

    /// <summary>a clamped to [lo, hi].</summary>
    public static Tensor Clamped(this Tensor a, double lo, double hi)
    {
        using var l = lo.ToScalar();
        using var h = hi.ToScalar();
        return a.clamp(l, h);
    }

    /// <summary>a &lt; v.</summary>
    public static Tensor LessThan(this Tensor a, long v)
    {
        using var s = v.ToScalar();
        return a.lt(s);
    }

    /// <summary>a != v.</summary>
    public static Tensor NotEqual(this Tensor a, long v)
    {
        using var s = v.ToScalar();
        return a.ne(s);
    }

    /// <summary>A tensor like <paramref name="x"/> filled with <paramref name="v"/>.</summary>
    public static Tensor FullLike(Tensor x, long v)
    {
        using var s = v.ToScalar();
        return full_like(x, s);
    }

    /// <summary>An int64 tensor of <paramref name="shape"/> filled with <paramref name="v"/>.</summary>
    public static Tensor Full(long[] shape, long v)
    {
        using var s = v.ToScalar();
        return full(shape, s, ScalarType.Int64);
    }

    /// <summary>0, 1, ..., n-1 (int64).</summary>
    public static Tensor Arange(long n, Device device)
    {
        using var stop = n.ToScalar();
        return arange(Zero, stop, One, ScalarType.Int64, device);
    }

    /// <summary>
    /// softplus(a) = log(1 + e^a), and a itself above 20 (torch's default beta 1 and threshold 20). Built
    /// from plain ops because TorchSharp's softplus makes its own Scalars; the exponent is clamped so the
    /// branch not taken never overflows (no inf * 0 = NaN in the gradient).
    /// </summary>
    public static Tensor Softplus(this Tensor a)
    {
        var smooth = a.clamp_max(SoftplusThreshold).exp().log1p();
        return where(a.gt(SoftplusThreshold), a, smooth);
    }

    /// <summary>a *= v, in place.</summary>
    public static Tensor TimesInPlace(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.mul_(s);
    }

    /// <summary>a += v, in place.</summary>
    public static Tensor PlusInPlace(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.add_(s, One);
    }

    /// <summary>a += alpha * b, in place.</summary>
    public static Tensor PlusInPlace(this Tensor a, Tensor b, double alpha)
    {
        using var s = alpha.ToScalar();
        return a.add_(b, s);
    }

    /// <summary>a += value * b * c, in place.</summary>
    public static Tensor AddProductInPlace(this Tensor a, Tensor b, Tensor c, double value)
    {
        using var s = value.ToScalar();
        return a.addcmul_(b, c, s);
    }

    /// <summary>a += value * b / c, in place.</summary>
    public static Tensor AddQuotientInPlace(this Tensor a, Tensor b, Tensor c, double value)
    {
        using var s = value.ToScalar();
        return a.addcdiv_(b, c, s);
    }
}
