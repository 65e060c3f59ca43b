using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>The <c>mtp.</c> prefix of every family: <c>layers</c>, one module per MTP depth (or MTP layer).</summary>
/// <typeparam name="TDepth">The family's depth module.</typeparam>
public sealed class MtpStack<TDepth> : nn.Module where TDepth : nn.Module
{
    readonly ModuleList<TDepth> layers;

    /// <summary>Creates the stack from its depths, in order.</summary>
    public MtpStack(IEnumerable<TDepth> depths) : base("MtpStack")
    {
        layers = new ModuleList<TDepth>(depths.ToArray());
        RegisterComponents();
    }

    /// <summary>The depths, in order.</summary>
    public IReadOnlyList<TDepth> Layers => layers.ToList();
}
