using System.Reflection;
using System.Reflection.Emit;

namespace Mtp.Model.Tests;

/// <summary>Reads the methods a compiled method calls, from its IL (call, callvirt, newobj, ldftn).</summary>
static class IlCalls
{
    static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes).GetFields()
        .Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    public const BindingFlags Declared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    /// <summary>Every method and constructor declared in <paramref name="assembly"/>, lambdas and local functions included.</summary>
    public static IEnumerable<MethodBase> Methods(Assembly assembly) =>
        assembly.GetTypes().SelectMany(t => t.GetMethods(Declared).Cast<MethodBase>().Concat(t.GetConstructors(Declared)));

    public static IEnumerable<MethodBase> Callees(MethodBase m)
    {
        byte[]? il = m.GetMethodBody()?.GetILAsByteArray();
        if (il is null) yield break;
        Type[]? typeArgs = m.DeclaringType is { IsGenericType: true } dt ? dt.GetGenericArguments() : null;
        Type[]? methodArgs = m.IsGenericMethod ? m.GetGenericArguments() : null;
        for (int i = 0; i < il.Length;)
        {
            var op = OpCodesByValue[il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i]];
            i += op.Size;
            if (op == OpCodes.Call || op == OpCodes.Callvirt || op == OpCodes.Newobj || op == OpCodes.Ldftn)
            {
                MethodBase? callee = null;
                try { callee = m.Module.ResolveMethod(BitConverter.ToInt32(il, i), typeArgs, methodArgs); }
                catch (ArgumentException) { } // a generic instantiation the reflection context cannot resolve
                if (callee is not null) yield return callee;
            }
            i += OperandSize(op, il, i);
        }
    }

    static int OperandSize(OpCode op, byte[] il, int at) => op.OperandType switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, at),
        _ => 4,
    };

    public static string Describe(MethodBase m) =>
        $"{m.DeclaringType?.FullName}.{m.Name}({string.Join(", ", m.GetParameters().Select(p => p.ParameterType.Name))})";
}
