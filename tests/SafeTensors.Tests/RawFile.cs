using System.Text;

namespace Mtp.SafeTensors.Tests;

/// <summary>Builds safetensors bytes by hand (independent of our writer) so tests can break each rule.</summary>
static class RawFile
{
    public static byte[] Build(string headerJson, int dataBytes, ulong? declaredLength = null)
    {
        byte[] h = Encoding.UTF8.GetBytes(headerJson);
        var bytes = new byte[8 + h.Length + dataBytes];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), declaredLength ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        for (int i = 0; i < dataBytes; i++) bytes[8 + h.Length + i] = (byte)(i * 7 + 1);
        return bytes;
    }

    public static string Write(string dir, string name, byte[] bytes)
    {
        string p = Path.Combine(dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }
}
