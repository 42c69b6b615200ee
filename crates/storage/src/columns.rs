//! Column lists named once per table, as literals so `concat!` can build
//! whole statements from them at compile time.

/// The profile columns of `users`, in this order: the profile query reads
/// them, UpdateProfile writes them, and a merge copies them from the absorbed
/// user when its profile is newer. A column added to the profile goes here,
/// and nowhere else.
macro_rules! user_profile_columns {
    () => {
        "nickname, avatar_url, sex, province, city, country, privileges"
    };
}
pub(crate) use user_profile_columns;
