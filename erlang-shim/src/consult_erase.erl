%% Erasure of a visitor in ejabberd, asked by the sidecar (EraseUser): its
%% offline messages (mod_offline) and MAM archive (mod_mam), each only when
%% that module runs on the user's own vhost, and with Account its account
%% (ejabberd_auth; the remove_user hook also clears its roster, private
%% storage and open sessions). Only a vhost this ejabberd serves. The
%% connections' on_erase (consult_sidecar).
-module(consult_erase).

-export([erase_user/2]).

-include("logger.hrl").

-spec erase_user(binary(), boolean()) -> consult_pb:erase_user_ack().
erase_user(Jid, Account) ->
    Node = atom_to_binary(node(), utf8),
    case parse(Jid) of
        {ok, LUser, LServer} ->
            case lists:member(LServer, ejabberd_option:hosts()) of
                true ->
                    Offline = gen_mod:is_loaded(LServer, mod_offline)
                        andalso ok(mod_offline:remove_user(LUser, LServer)),
                    Mam = gen_mod:is_loaded(LServer, mod_mam)
                        andalso ok(mod_mam:remove_user(LUser, LServer)),
                    Removed = Account andalso ejabberd_auth:user_exists(LUser, LServer)
                        andalso ok(ejabberd_auth:remove_user(LUser, LServer)),
                    ?INFO_MSG("consult: erased ~ts@~ts for the sidecar (offline: ~p, mam: ~p, account: ~p)",
                              [LUser, LServer, Offline, Mam, Removed]),
                    #{offline => Offline, mam => Mam, account => Removed, node => Node};
                false ->
                    failed(<<LServer/binary, " is not a vhost of this ejabberd">>, Node)
            end;
        error ->
            failed(<<"not a user JID: ", Jid/binary>>, Node)
    end.

%% Both modules' remove_user answer whatever their backend did; a crash is the failure.
ok(_) -> true.

failed(Why, Node) ->
    #{offline => false, mam => false, account => false, error => Why, node => Node}.

parse(Jid) ->
    try jid:decode(Jid) of
        {jid, _, _, _, LUser, LServer, _} when LUser =/= <<>> -> {ok, LUser, LServer};
        _ -> error
    catch _:_ -> error
    end.
