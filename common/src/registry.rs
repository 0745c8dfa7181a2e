//! Open registries of the standards (IANA and 3GPP code points) as Rust enums, all
//! declared by one crate-private macro, `registry!`.
//!
//! A registry is open: a peer may send a value this code has no name for (a newer RFC, a
//! vendor's private use). So every registry enum has, beside its named values, an
//! `Unknown(n)` arm that keeps any other value: parsing never fails on a code point, and
//! re-emitting gives back the octets that came in. Each enum converts both ways
//! (`From<u8/u16/u32/i32>` and back, and the `const fn`s `from_value` / `value`, so a
//! constant can be written in terms of a variant), derives `Debug`, and implements
//! `Display` as the identifier the standard gives the value (`IKE_SA_INIT`,
//! `NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE`, `AT_RAND`, `DIAMETER_SUCCESS`); an unknown
//! value displays as its number.
//!
//! ```ignore
//! registry! {
//!     /// Exchange types (RFC 7296 section 3.1).
//!     pub enum ExchangeType: u8 {
//!         IkeSaInit = 34 => "IKE_SA_INIT",
//!         IkeAuth = 35 => "IKE_AUTH",
//!     }
//! }
//! assert_eq!(ExchangeType::from(35), ExchangeType::IkeAuth);
//! assert_eq!(u8::from(ExchangeType::Unknown(99)), 99);
//! assert_eq!(ExchangeType::IkeSaInit.to_string(), "IKE_SA_INIT");
//! ```

use core::fmt;
use core::hash::Hash;

/// What every registry enum declared by `registry!` implements, so that code (and the
/// tests) can treat all registries alike.
pub trait Registry: Copy + Eq + Hash + fmt::Debug + fmt::Display + 'static {
    /// The width of the field the value travels in.
    type Value: Copy + Eq + Hash + fmt::Debug + fmt::Display;
    /// Every named value, in the order the registry declares them.
    const NAMED: &'static [Self];
    /// The value as it is on the wire.
    fn value(self) -> Self::Value;
    /// The named variant for `value`, or `Unknown(value)`.
    fn from_value(value: Self::Value) -> Self;
    /// The standard's identifier of a named value; `None` for `Unknown`.
    fn name(self) -> Option<&'static str>;
}

/// Declares an open registry: an enum with the named values, an `Unknown(n)` arm, the
/// conversions both ways, `Display` (the standard's identifier) and [`Registry`].
///
/// Each named value is `Variant = literal => "IDENTIFIER"`, with doc comments before it
/// if it needs more words; a value listed twice does not compile (unreachable pattern).
macro_rules! registry {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $ty:ty {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $value:literal => $ident:literal
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                #[doc = concat!("`", $ident, "` (", stringify!($value), ").")]
                $variant,
            )*
            /// A value this registry has no name for here, kept as it was.
            Unknown($ty),
        }

        impl $name {
            /// Every named value, in declaration order.
            pub const NAMED: &'static [$name] = &[$($name::$variant),*];

            /// The named variant for `value`, or `Unknown(value)`.
            pub const fn from_value(value: $ty) -> Self {
                match value {
                    $($value => $name::$variant,)*
                    other => $name::Unknown(other),
                }
            }

            /// The value as it is on the wire.
            pub const fn value(self) -> $ty {
                match self {
                    $($name::$variant => $value,)*
                    $name::Unknown(other) => other,
                }
            }

            /// The standard's identifier of a named value; `None` for `Unknown`.
            pub const fn name(self) -> Option<&'static str> {
                match self {
                    $($name::$variant => Some($ident),)*
                    $name::Unknown(_) => None,
                }
            }
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                $name::from_value(value)
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> $ty {
                value.value()
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    Some(name) => f.pad(name),
                    None => ::core::fmt::Display::fmt(&self.value(), f),
                }
            }
        }

        impl $crate::registry::Registry for $name {
            type Value = $ty;
            const NAMED: &'static [Self] = $name::NAMED;
            fn value(self) -> $ty {
                $name::value(self)
            }
            fn from_value(value: $ty) -> Self {
                $name::from_value(value)
            }
            fn name(self) -> Option<&'static str> {
                $name::name(self)
            }
        }
    };
}
pub(crate) use registry;

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use super::Registry;

    /// Values of a field width worth trying as unknown ones: every value of an octet;
    /// for wider fields the ends of the range and the neighbours of every named value.
    pub(crate) trait Samples: Sized {
        fn samples(named: &[Self]) -> Vec<Self>;
    }

    impl Samples for u8 {
        fn samples(_: &[u8]) -> Vec<u8> {
            (0..=u8::MAX).collect()
        }
    }

    macro_rules! wide_samples {
        ($($ty:ty),*) => {$(
            impl Samples for $ty {
                fn samples(named: &[$ty]) -> Vec<$ty> {
                    let mut out = vec![0, 1, 2, <$ty>::MAX, <$ty>::MAX - 1, <$ty>::MIN];
                    for &v in named {
                        out.extend([v.wrapping_sub(1), v, v.wrapping_add(1)]);
                    }
                    out
                }
            }
        )*};
    }
    wide_samples!(u16, u32, i32);

    /// Checks a registry: every named value round-trips through its number and displays
    /// as its identifier; names and numbers are unique; every other value becomes
    /// `Unknown`, converts back unchanged and displays as its number.
    pub(crate) fn assert_registry<R>()
    where
        R: Registry,
        R::Value: Samples,
    {
        let named: Vec<R::Value> = R::NAMED.iter().map(|r| r.value()).collect();
        assert!(
            !named.is_empty(),
            "{} names nothing",
            std::any::type_name::<R>()
        );
        let mut names = HashSet::new();
        let mut values = HashSet::new();
        for &r in R::NAMED {
            let name = r.name().expect("a named value has a name");
            assert!(!name.is_empty());
            assert!(names.insert(name), "{name} named twice");
            assert!(values.insert(r.value()), "{r:?}: value listed twice");
            assert_eq!(R::from_value(r.value()), r, "{r:?} does not round-trip");
            assert_eq!(r.to_string(), name);
        }
        for v in R::Value::samples(&named) {
            let r = R::from_value(v);
            assert_eq!(r.value(), v, "{r:?} does not convert back to {v}");
            if named.contains(&v) {
                assert!(r.name().is_some());
            } else {
                assert_eq!(r.name(), None, "{v} is not named but got {r:?}");
                assert_eq!(r.to_string(), v.to_string());
                assert!(format!("{r:?}").starts_with("Unknown("));
            }
        }
    }

    registry! {
        /// A registry for the macro's own tests.
        enum Colour: u16 {
            /// Doc comments on values are kept.
            Red = 1 => "RED",
            Green = 2 => "GREEN",
            Blue = 0xffff => "BLUE",
        }
    }

    registry! {
        enum Signed: i32 {
            MinusOne = -1 => "MINUS_ONE",
            Zero = 0 => "ZERO",
        }
    }

    #[test]
    fn named_values_round_trip_and_display_their_identifier() {
        assert_eq!(Colour::from(2), Colour::Green);
        assert_eq!(u16::from(Colour::Blue), 0xffff);
        assert_eq!(Colour::Red.to_string(), "RED");
        assert_eq!(format!("{:>5}", Colour::Red), "  RED");
        assert_eq!(format!("{:?}", Colour::Green), "Green");
        assert_eq!(Colour::NAMED, &[Colour::Red, Colour::Green, Colour::Blue]);
        assert_eq!(Signed::from(-1), Signed::MinusOne);
        assert_registry::<Colour>();
        assert_registry::<Signed>();
    }

    #[test]
    fn unknown_values_are_kept_as_they_came() {
        assert_eq!(Colour::from(3), Colour::Unknown(3));
        assert_eq!(u16::from(Colour::Unknown(3)), 3);
        assert_eq!(Colour::Unknown(3).to_string(), "3");
        assert_eq!(Colour::Unknown(3).name(), None);
        assert_eq!(format!("{:?}", Colour::Unknown(3)), "Unknown(3)");
        // `Unknown` holding a named value is not what `from` gives, but converts the same.
        assert_eq!(u16::from(Colour::Unknown(1)), 1);
        assert_eq!(Signed::from(7), Signed::Unknown(7));
    }

    /// The constants a registry's `const fn`s make possible: usable in patterns.
    #[test]
    fn const_values_serve_as_patterns() {
        const GREEN: u16 = Colour::Green.value();
        const BLUE: Colour = Colour::from_value(0xffff);
        assert!(matches!(2u16, GREEN));
        assert_eq!(BLUE, Colour::Blue);
    }
}
