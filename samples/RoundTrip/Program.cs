// Converts a Hugging Face checkpoint to the training layout and back with the original as reference, then checks
// that every tensor returned byte for byte. Usage: RoundTrip HF_DIR WORK_DIR (WORK_DIR must not exist).
// Exit codes follow the mtp command: 0 identical, 2 usage, 3 malformed, 4 inconsistent, 5 I/O, 6 different.
using Mtp.Adapters;
using Mtp.SafeTensors;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: RoundTrip HF_DIR WORK_DIR");
    return 2;
}
string hf = args[0], work = args[1];
string native = Path.Combine(work, "native"), back = Path.Combine(work, "hf");
try
{
    ConversionResult toNative = Converter.ToNative(hf, native, new ConvertOptions());
    Console.WriteLine($"{toNative.Family}: {toNative.TensorsWritten} training tensors in {native}");
    // With the original as reference, unchanged weights are re-quantized to their original bytes.
    ConversionResult toHf = Converter.ToHf(native, back, new ConvertOptions { Reference = hf });
    Console.WriteLine($"back to HF: {toHf.TensorsWritten} tensors in {back}");
    VerifyReport report = Verifier.Compare(hf, back);
    Console.WriteLine(report.Identical
        ? $"identical: {report.Compared} tensors"
        : $"different: {report.Differences.Count} tensors differ, {report.OnlyInA.Count} missing, {report.OnlyInB.Count} extra");
    return report.Identical ? 0 : 6;
}
catch (AdapterException e)
{
    Console.Error.WriteLine("RoundTrip: " + e.Message);
    // The library reports a category; the program picks its exit code (the same numbers as mtp).
    return e.Kind switch
    {
        AdapterErrorKind.Usage => 2,
        AdapterErrorKind.Malformed => 3,
        AdapterErrorKind.Inconsistent => 4,
        _ => 5,
    };
}
catch (SafeTensorsException e)
{
    Console.Error.WriteLine("RoundTrip: " + e.Message);
    return 3;
}
catch (IOException e)
{
    Console.Error.WriteLine("RoundTrip: " + e.Message);
    return 5;
}
