package kurrent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/payledger/payledger/eventstore"
)

// RetentionGuards reports what protects the log stream from deletion and
// truncation (R2), as far as this store's user can read it:
//   - log_no_max_age, log_no_max_count, log_no_truncate_before: the log
//     stream's metadata sets no $maxAge, $maxCount or $tb, which would let
//     KurrentDB drop old events;
//   - log_acl_denies_delete, log_acl_denies_metadata_write: the log
//     stream's own ACL names roles for $d and $mw, and neither $all nor
//     this store's user is among them (so the user can neither delete the
//     log nor set the settings above). Without a user (an insecure node)
//     or as admin, nothing is denied, so these are missing. Group
//     membership is not visible to the client and is not checked;
//   - default_acl_denies_delete, default_acl_denies_metadata_write: the
//     same of $userStreamAcl in $settings, which covers the index and
//     snapshot streams; reported only when the user may read $settings.
func (s *Store) RetentionGuards(ctx context.Context) ([]eventstore.Guard, error) {
	meta, err := s.rawMetadata(ctx, "$$"+s.names.log())
	if err != nil {
		return nil, fmt.Errorf("kurrent store: the log's metadata: %w", err)
	}
	guards, err := logGuards(meta, s.user)
	if err != nil {
		return nil, err
	}
	settings, err := s.rawMetadata(ctx, "$settings")
	switch {
	case codeOf(err) == esdb.ErrorCodeAccessDenied:
		return guards, nil
	case err != nil:
		return nil, fmt.Errorf("kurrent store: $settings: %w", err)
	}
	more, err := settingsGuards(settings, s.user)
	if err != nil {
		return nil, err
	}
	return append(guards, more...), nil
}

// rawMetadata returns the data of stream's last event (nil when none).
func (s *Store) rawMetadata(ctx context.Context, stream string) ([]byte, error) {
	rs, err := s.read(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil || len(rs) == 0 {
		return nil, err
	}
	return rs[0].Event.Data, nil
}

// logGuards evaluates the log stream's metadata (nil when it has none) for
// user. The client's own metadata parser refuses ACLs with several roles,
// so the JSON is read here.
func logGuards(meta []byte, user string) ([]eventstore.Guard, error) {
	props := map[string]json.RawMessage{}
	if meta != nil {
		if err := json.Unmarshal(meta, &props); err != nil {
			return nil, fmt.Errorf("kurrent store: the log's metadata: %w", err)
		}
	}
	unset := func(key string) bool {
		v, ok := props[key]
		return !ok || string(v) == "null"
	}
	acl, err := aclOf(props["$acl"])
	if err != nil {
		return nil, fmt.Errorf("kurrent store: the log's $acl: %w", err)
	}
	return []eventstore.Guard{
		{Name: "log_no_max_age", Present: unset("$maxAge")},
		{Name: "log_no_max_count", Present: unset("$maxCount")},
		{Name: "log_no_truncate_before", Present: unset("$tb")},
		{Name: "log_acl_denies_delete", Present: denies(acl, "$d", user)},
		{Name: "log_acl_denies_metadata_write", Present: denies(acl, "$mw", user)},
	}, nil
}

// settingsGuards evaluates $settings' default ACL of user streams.
func settingsGuards(settings []byte, user string) ([]eventstore.Guard, error) {
	props := map[string]json.RawMessage{}
	if settings != nil {
		if err := json.Unmarshal(settings, &props); err != nil {
			return nil, fmt.Errorf("kurrent store: $settings: %w", err)
		}
	}
	acl, err := aclOf(props["$userStreamAcl"])
	if err != nil {
		return nil, fmt.Errorf("kurrent store: $settings' $userStreamAcl: %w", err)
	}
	return []eventstore.Guard{
		{Name: "default_acl_denies_delete", Present: denies(acl, "$d", user)},
		{Name: "default_acl_denies_metadata_write", Present: denies(acl, "$mw", user)},
	}, nil
}

// aclOf reads an ACL object into its roles per permission; a permission
// the object does not name is absent from the map. A string ACL (such as
// "$userStreamAcl") defers to the defaults, which is the same as naming
// nothing.
func aclOf(raw json.RawMessage) (map[string][]string, error) {
	out := map[string][]string{}
	if len(raw) == 0 || string(raw) == "null" || raw[0] == '"' {
		return out, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	for k, v := range obj {
		var one string
		if err := json.Unmarshal(v, &one); err == nil {
			out[k] = []string{one}
			continue
		}
		var many []string
		if err := json.Unmarshal(v, &many); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = many
	}
	return out, nil
}

// denies reports whether the ACL names perm and grants it neither to
// every user ($all) nor to user by name. The admin user is in $admins,
// whom KurrentDB never denies, and without a user nothing is checked.
func denies(acl map[string][]string, perm, user string) bool {
	roles, named := acl[perm]
	if !named || user == "" || user == "admin" {
		return false
	}
	return !slices.Contains(roles, "$all") && !slices.Contains(roles, user)
}

// MapRetentionError turns KurrentDB's refusal of a delete, tombstone or
// metadata write on the log (access denied by its ACL) into an error
// wrapping eventstore.ErrDeleteForbidden; other errors are returned
// unchanged.
func MapRetentionError(err error) error {
	if err == nil || errors.Is(err, eventstore.ErrDeleteForbidden) {
		return err
	}
	if codeOf(err) == esdb.ErrorCodeAccessDenied {
		return fmt.Errorf("%w: %w", eventstore.ErrDeleteForbidden, err)
	}
	return err
}
