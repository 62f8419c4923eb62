"""Rust symbol names the demangler tests share (no tests here)."""

# v0 names from rustc 1.8x builds: closures, <T as Trait>, dyn for<'a> Fn, const generics,
# punycode, fn pointers with `unsafe extern "C"`, shims, tuples, backrefs
V0 = [
    "_RNCNvCskK7mfDs1mzF_1m4mains_0B3_",
    "_RNvXs_Cs9TjmMI0yQWn_5dynfnRDG_INtNtNtCsgEmfK2I1SDS_4core3ops8function2FnTRL0_eEEp6Output"
    "uEL_NtB4_5Named4name",
    "_RINvNtCsgEmfK2I1SDS_4core3ptr13drop_in_placeDG_INtNtNtB4_3ops8function2FnTRL0_eEEp6Outpu"
    "tjEL_ECs9TjmMI0yQWn_5dynfn",
    "_RNvXNtNtNtCsgEmfK2I1SDS_4core3ops8function5implsRDG_INtB4_2FnTRL0_eEEp6OutputuEL_IBP_TRe"
    "EE4callCs9TjmMI0yQWn_5dynfn",
    "_RINvNtCsgEmfK2I1SDS_4core6escape14escape_unicodeKja_ECsgY6Mt91CT9J_14rustc_demangle",
    "_RNvMs3_NtCslNYArtu3iFV_5alloc7raw_vecINtB5_6RawVecTOhFUKCBN_EuENtNtCsjrHSEGnQ3l9_3std5a"
    "lloc6SystemE8grow_oneB13_",
    "_RNvCs9TjmMI0yQWn_5dynfnu5idktc",
    "_RNSNvYNCNCNvNtNtCsjrHSEGnQ3l9_3std3sys9backtrace10__print_fmts_00INtNtNtCsgEmfK2I1SDS_4c"
    "ore3ops8function6FnOnceTRNtNtNtBe_12backtrace_rs9symbolize6SymbolEE9call_once6vtableBe_",
    "_RNvNCNKNvNtNtCsjrHSEGnQ3l9_3std2io5stdio14OUTPUT_CAPTURE0023___RUST_STD_INTERNAL_VAL",
]
LEGACY = ["_ZN4core3fmt5write17h0123456789abcdefE",
          "_ZN71_$LT$alloc..vec..Vec$LT$T$GT$$u20$as$u20$core..ops..drop..Drop$GT$4drop17h1a2"
          "b3c4d5e6f7a8bE"]
BASIC = "u8|u16|u32|u64|u128|usize|i8|i16|i32|i64|i128|isize|bool|char"
