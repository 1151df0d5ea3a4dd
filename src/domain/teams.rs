//! Teams, which nest, and their members. Every function runs on a
//! tenant-bound connection.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use uuid::Uuid;

use crate::db::schema::tenant::{team_members, teams, users};
use crate::domain::users::User;
use crate::error::{AppError, AppResult};

/// A team.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = teams)]
pub struct Team {
    pub id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Checks a team name: 1 to 200 characters after trimming.
pub fn parse_name(raw: &str) -> AppResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 || name.contains('\0') {
        return Err(AppError::bad_input(
            "name",
            "a team name is 1 to 200 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Every team, by name.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Team>> {
    teams::table
        .select(Team::as_select())
        .order((teams::name, teams::id))
        .limit(10_000)
        .load(conn)
        .await
}

/// Teams by id.
pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Team>> {
    teams::table
        .filter(teams::id.eq_any(ids))
        .select(Team::as_select())
        .load(conn)
        .await
}

/// The direct sub-teams of each of `parents`.
pub async fn children_of(conn: &mut AsyncPgConnection, parents: &[Uuid]) -> QueryResult<Vec<Team>> {
    teams::table
        .filter(teams::parent_id.eq_any(parents))
        .select(Team::as_select())
        .order((teams::name, teams::id))
        .load(conn)
        .await
}

/// The members of each of `team_ids`, as (team, user) pairs.
pub async fn members_of(
    conn: &mut AsyncPgConnection,
    team_ids: &[Uuid],
) -> QueryResult<Vec<(Uuid, User)>> {
    team_members::table
        .inner_join(users::table)
        .filter(team_members::team_id.eq_any(team_ids))
        .select((team_members::team_id, User::as_select()))
        .order((team_members::team_id, users::display_name, users::id))
        .load(conn)
        .await
}

/// Creates a team (under `parent`, if given).
pub async fn create(
    conn: &mut AsyncPgConnection,
    name: &str,
    parent: Option<Uuid>,
) -> QueryResult<Team> {
    let now = Utc::now();
    diesel::insert_into(teams::table)
        .values((
            teams::id.eq(Uuid::now_v7()),
            teams::name.eq(name),
            teams::parent_id.eq(parent),
            teams::created_at.eq(now),
            teams::updated_at.eq(now),
        ))
        .returning(Team::as_returning())
        .get_result(conn)
        .await
}

/// Renames and/or moves a team; a team cannot move under itself or one of
/// its own sub-teams.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    name: Option<&str>,
    parent: Option<Option<Uuid>>,
) -> AppResult<Team> {
    if let Some(Some(parent)) = parent {
        // Two moves at once could each pass the check and together make a
        // cycle: they take turns.
        conn.batch_execute("LOCK TABLE teams IN SHARE ROW EXCLUSIVE MODE")
            .await?;
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            cycle: bool,
        }
        let row: Row = diesel::sql_query(
            "WITH RECURSIVE up (id, parent_id) AS ( \
               SELECT id, parent_id FROM teams WHERE id = $1 \
               UNION SELECT t.id, t.parent_id FROM teams t JOIN up ON t.id = up.parent_id) \
             SELECT EXISTS (SELECT 1 FROM up WHERE id = $2) AS cycle",
        )
        .bind::<SqlUuid, _>(parent)
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await?;
        if row.cycle {
            return Err(AppError::bad_input(
                "parentId",
                "a team cannot be moved under itself or one of its sub-teams",
            ));
        }
    }
    #[derive(AsChangeset)]
    #[diesel(table_name = teams)]
    struct Changes<'a> {
        name: Option<&'a str>,
        parent_id: Option<Option<Uuid>>,
        updated_at: DateTime<Utc>,
    }
    diesel::update(teams::table.find(id))
        .set(Changes {
            name,
            parent_id: parent,
            updated_at: Utc::now(),
        })
        .returning(Team::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found(Some("id"), "no such team"))
}

/// Deletes a team that has no sub-teams (its memberships go with it).
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<()> {
    let children: i64 = teams::table
        .filter(teams::parent_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    if children > 0 {
        return Err(AppError::conflict(
            "id",
            "the team has sub-teams: delete or move them first",
        ));
    }
    let n = diesel::delete(teams::table.find(id)).execute(conn).await?;
    if n == 0 {
        return Err(AppError::not_found(Some("id"), "no such team"));
    }
    Ok(())
}

/// Adds a user to a team (adding twice is a no-op).
pub async fn add_member(conn: &mut AsyncPgConnection, team: Uuid, user: Uuid) -> QueryResult<()> {
    diesel::insert_into(team_members::table)
        .values((
            team_members::team_id.eq(team),
            team_members::user_id.eq(user),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map(drop)
}

/// Removes a user from a team; false if they were not in it.
pub async fn remove_member(
    conn: &mut AsyncPgConnection,
    team: Uuid,
    user: Uuid,
) -> QueryResult<bool> {
    diesel::delete(
        team_members::table
            .filter(team_members::team_id.eq(team))
            .filter(team_members::user_id.eq(user)),
    )
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// The team with `id`.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Team>> {
    teams::table
        .find(id)
        .select(Team::as_select())
        .first(conn)
        .await
        .optional()
}
