using System.Runtime.CompilerServices;

// The tests exercise the family modules directly; only the API src/Cli uses is public.
[assembly: InternalsVisibleTo("Mtp.Model.Tests")]
