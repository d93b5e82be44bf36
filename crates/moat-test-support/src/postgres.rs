//! PostgreSQL test servers: URLs of throwaway databases on the server `MOAT_TEST_POSTGRES` names.

/// `url` with its database replaced by `name`, its query (e.g. `?connect_timeout=2`) kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| i + authority);
    format!("{}/{name}{query}", &base[..path])
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://moat@127.0.0.1:54329/moat_test", "other"),
            "postgres://moat@127.0.0.1:54329/other"
        );
        assert_eq!(
            with_database("postgres://moat@127.0.0.1:54329?connect_timeout=2", "other"),
            "postgres://moat@127.0.0.1:54329/other?connect_timeout=2"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
    }
}
